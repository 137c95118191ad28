"""Argument handling of update, events and ps: flags → resources, units, merging, validation,
Go durations, and the ps table filter.  Pure functions, no root needed."""

from __future__ import annotations

import io
import json
import sys

import pytest

from ociruntime.errors import ConfigError, OCIError, UsageError
from ociruntime.lifecycle import update as up
from ociruntime.lifecycle.events import parse_duration
from ociruntime.lifecycle.ps import filter_table, pid_column


def flags(**given: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {name: None for name in up.FLAG_FIELDS}
    values.update({name: None for name in up.RDT_FLAGS})
    values.update({k.replace("_", "-"): v for k, v in given.items()})
    return values


# --- RAMInBytes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [
    ("0", 0), ("100", 100), ("100b", 100), ("1k", 1024), ("1K", 1024), ("64m", 64 << 20),
    ("64M", 64 << 20), ("64mb", 64 << 20), ("64MiB", 64 << 20), ("1g", 1 << 30), ("1G", 1 << 30),
    ("2t", 2 << 40), ("1p", 1 << 50), ("1.5g", 3 << 29), ("32 m", 32 << 20), ("-1", -1),
])
def test_parse_ram_units(text: str, want: int) -> None:
    assert up.parse_ram(text) == want


@pytest.mark.parametrize("text", ["", "m", "1x", "-2", "1.2.3m", "0x10", " 1m", "1e3", "1 000", "10000000p"])
def test_parse_ram_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        up.parse_ram(text)


# --- flags → resources --------------------------------------------------------------------------
def test_flags_to_resources_every_field() -> None:
    r = up.resources_from_flags(flags(
        blkio_weight="500", cpu_period="100000", cpu_quota="-1", cpu_burst="0", cpu_share="512",
        cpu_rt_period="1000000", cpu_rt_runtime="950000", cpuset_cpus="0-1", cpuset_mems="0",
        memory="64m", memory_reservation="32M", memory_swap="-1", pids_limit="20"))
    assert r == {
        "blockIO": {"weight": 500},
        "cpu": {"period": 100000, "quota": -1, "burst": 0, "shares": 512, "realtimePeriod": 1000000,
                "realtimeRuntime": 950000, "cpus": "0-1", "mems": "0"},
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": -1},
        "pids": {"limit": 20},
    }


def test_flags_absent_or_zero_leave_values_unchanged() -> None:
    assert up.resources_from_flags(flags()) == {}
    # runc: 0 means "not set" for every field but the burst, where 0 switches bursting off.
    assert up.resources_from_flags(flags(memory="0", cpu_quota="0", pids_limit="0", cpuset_cpus="")) == {}
    assert up.resources_from_flags(flags(cpu_burst="0")) == {"cpu": {"burst": 0}}


@pytest.mark.parametrize(("flag", "value"), [
    ("cpu_period", "-5"), ("cpu_share", "1.5"), ("cpu_quota", "ten"), ("blkio_weight", " 5"),
    ("pids_limit", "9223372036854775808"), ("cpu_period", "18446744073709551616"), ("memory", "12q"),
    ("memory_swap", "-2"), ("cpu_rt_runtime", "1_000"),
])
def test_flags_bad_numbers_name_the_flag(flag: str, value: str) -> None:
    with pytest.raises(UsageError, match=f"--{flag.replace('_', '-')}"):
        up.resources_from_flags(flags(**{flag: value}))


@pytest.mark.parametrize("flag", ["l3-cache-schema", "mem-bw-schema"])
def test_intel_rdt_refused(flag: str) -> None:
    values = flags()
    values[flag] = "L3:0=f"
    with pytest.raises(OCIError, match="Intel RDT"):
        up.resources_from_flags(values)


def test_read_resources_from_stdin_and_file(tmp_path, monkeypatch) -> None:
    doc = {"memory": {"limit": 1 << 26}, "pids": {"limit": 5}}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(doc).encode())))
    assert up.read_resources("-") == doc
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    assert up.read_resources(str(f)) == doc


@pytest.mark.parametrize(("content", "match"), [("{", "invalid JSON"), ("[1]", "JSON object"),
                                                ("null", "JSON object")])
def test_read_resources_rejects_non_objects(tmp_path, content: str, match: str) -> None:
    f = tmp_path / "r.json"
    f.write_text(content)
    with pytest.raises(ConfigError, match=match):
        up.read_resources(str(f))


def test_read_resources_missing_file(tmp_path) -> None:
    with pytest.raises(OCIError, match="no such file"):
        up.read_resources(str(tmp_path / "absent.json"))


# --- merge --------------------------------------------------------------------------------------
def test_merge_objects_member_by_member_lists_replace_null_ignored() -> None:
    base = {"cpu": {"quota": 50000, "cpus": "0"}, "memory": {"limit": 100},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 1}], "unified": {"a.b": "1"}}
    update = {"cpu": {"period": 100000}, "memory": {"limit": None, "swap": 200},
              "hugepageLimits": [{"pageSize": "1GB", "limit": 2}], "unified": {"c.d": "2"}, "pids": None}
    merged = up.merge(base, update)
    assert merged == {"cpu": {"quota": 50000, "cpus": "0", "period": 100000},
                      "memory": {"limit": 100, "swap": 200},
                      "hugepageLimits": [{"pageSize": "1GB", "limit": 2}],
                      "unified": {"a.b": "1", "c.d": "2"}}
    assert base["cpu"] == {"quota": 50000, "cpus": "0"}, "merge must not modify its inputs"


def test_merge_into_nothing_is_the_update() -> None:
    assert up.merge({}, {"pids": {"limit": 3}}) == {"pids": {"limit": 3}}


def test_to_apply_takes_touched_sections_whole() -> None:
    merged = {"cpu": {"quota": 50000, "period": 100000}, "memory": {"limit": 100}, "pids": {"limit": 2}}
    assert up.to_apply(merged, {"cpu": {"period": 100000}}) == {"cpu": {"quota": 50000, "period": 100000}}
    assert up.to_apply(merged, {"pids": None}) == {}


def test_to_store_drops_check_before_update() -> None:
    merged = {"memory": {"limit": 5, "checkBeforeUpdate": True}, "pids": {"limit": 1}}
    assert up.to_store(merged) == {"memory": {"limit": 5}, "pids": {"limit": 1}}
    assert merged["memory"]["checkBeforeUpdate"] is True


# --- validation before any write ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["v1", "hybrid", "v2"])
def test_validate_accepts_a_normal_update(mode: str) -> None:
    up.validate({"memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25},
                 "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
                 "pids": {"limit": 10}, "blockIO": {"weight": 100}}, mode)


@pytest.mark.parametrize(("resources", "match"), [
    ({"memory": {"limit": "64m"}}, "memory.limit: must be an integer"),
    ({"memory": {"limit": -2}}, "memory.limit"),
    ({"memory": {"swappiness": 101}}, "swappiness"),
    ({"cpu": {"quota": 1.5}}, "cpu.quota"),
    ({"cpu": {"cpus": "0\n1"}}, "cpu.cpus"),
    ({"pids": {"limit": True}}, "pids.limit"),
    ({"blockIO": {"weight": 1001}}, "blockIO.weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, "major and minor"),
    ({"hugepageLimits": [{"pageSize": "../x", "limit": 1}]}, "pageSize"),
    ({"devices": [{"allow": "yes"}]}, "devices"),
    ({"network": {"classID": -1}}, "classID"),
    ({"rdma": {"mlx/0": {"hcaHandles": 1}}}, "rdma"),
    ({"unified": {"memory.max": "1"}}, "^invalid configuration: cannot use unified on cgroup v1$"),
    ({"frobnicate": {}}, "unknown resource"),
    ({"memory": []}, "must be an object"),
])
def test_validate_rejects(resources: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        up.validate(resources, "hybrid")


@pytest.mark.parametrize(("resources", "match"), [
    ({"memory": {"swap": 100}}, "needs a memory limit"),
    ({"memory": {"limit": 200, "swap": 100}}, "must be >="),
    ({"memory": {"swappiness": 10}}, "swappiness"),
    ({"cpu": {"realtimeRuntime": 10}}, "realtime"),
    ({"network": {"classID": 1}}, "network"),
    ({"unified": {"../x": "1"}}, "not a cgroup file name"),
    ({"unified": {"memory.max": 5}}, "must be a string"),
])
def test_validate_rejects_on_v2(resources: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        up.validate(resources, "v2")


# --- Go durations -------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [
    ("5s", 5.0), ("100ms", 0.1), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5),
    (".5s", 0.5), ("1.s", 1.0), ("250us", 250e-6), ("250µs", 250e-6), ("10ns", 10e-9), ("0", 0.0),
    ("+2s", 2.0), ("-2s", -2.0), ("1h2m3s4ms", 3723.004),
])
def test_parse_duration(text: str, want: float) -> None:
    assert parse_duration(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1.5", ".s", "5 s", "-", "5s5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="duration"):
        parse_duration(text)


# --- ps table filter ----------------------------------------------------------------------------
PS_EF = """UID        PID  PPID  C STIME TTY          TIME CMD
root         1     0  0 10:00 ?        00:00:01 /sbin/init
root       120     1  0 10:01 ?        00:00:00 sleep 100
root       121   120  0 10:01 ?        00:00:00 sh -c echo a b c
root       300     1  0 10:02 pts/0    00:00:00 ps -ef
"""


def test_filter_table_keeps_header_and_container_lines() -> None:
    out = filter_table(PS_EF, [120, 121, 999])
    assert out.splitlines() == PS_EF.splitlines()[0:1] + PS_EF.splitlines()[2:4]


def test_filter_table_pid_column_found_by_name() -> None:
    text = "  PID TTY          TIME CMD\n  7 ?  00:00:00 a\n  8 ?  00:00:00 b\n"
    assert pid_column(text.splitlines()[0]) == 0
    assert filter_table(text, [8]).splitlines() == ["  PID TTY          TIME CMD", "  8 ?  00:00:00 b"]


def test_filter_table_errors() -> None:
    with pytest.raises(OCIError, match="PID field"):
        filter_table("USER COMMAND\nroot x\n", [1])
    with pytest.raises(OCIError, match="unable to parse pid"):
        filter_table("PID CMD\nabc x\n", [1])
