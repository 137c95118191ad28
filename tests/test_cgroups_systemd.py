"""The systemd cgroup driver's pure parts: names, paths, and resources as unit properties.

Starting and stopping real scopes needs systemd as PID 1: integration/test_systemd_cgroup.py
runs in the qemu guest booted with systemd (make test-systemd)."""

from __future__ import annotations

import json

import pytest

from ociruntime.cgroups import Layout, Mount, manager_from_state
from ociruntime.cgroups import systemd as sd
from ociruntime.errors import ConfigError

U64_MAX = 2**64 - 1


@pytest.mark.parametrize(("name", "path"), [
    ("system.slice", "/system.slice"),
    ("-.slice", "/"),
    ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
    ("machine.slice", "/machine.slice"),
])  # fmt: skip
def test_expand_slice(name: str, path: str) -> None:
    assert sd.expand_slice(name) == path


@pytest.mark.parametrize("bad", ["", ".slice", "a", "a.scope", "a--b.slice", "-a.slice", "a-.slice",
                                 "a/b.slice"])
def test_expand_slice_refuses(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid systemd slice name"):
        sd.expand_slice(bad)


def test_parse_cgroups_path_like_runc() -> None:
    assert sd.parse_cgroups_path(None, "abc") == ("system.slice", "runc-abc.scope")
    assert sd.parse_cgroups_path("", "abc") == ("system.slice", "runc-abc.scope")
    assert sd.parse_cgroups_path("machine.slice:libpod:123", "abc") == ("machine.slice", "libpod-123.scope")
    assert sd.parse_cgroups_path(":cri-containerd:x", "abc") == ("system.slice", "cri-containerd-x.scope")
    assert sd.parse_cgroups_path("kubepods-besteffort.slice:cri:x", "i")[0] == "kubepods-besteffort.slice"


@pytest.mark.parametrize(("path", "message"), [
    ("/a/b", "slice:prefix:name"),
    ("a:b", "slice:prefix:name"),
    ("a:b:c:d", "slice:prefix:name"),
    ("bad:p:n", "invalid systemd slice name"),
    ("system.slice:p:n.slice", "scope, not a slice"),
    ("system.slice:p:", "not a valid systemd unit name"),
    ("system.slice:p:a b", "not a valid systemd unit name"),
    ("system.slice:p:a/../b", "not a valid systemd unit name"),
])  # fmt: skip
def test_parse_cgroups_path_refuses(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as ei:
        sd.parse_cgroups_path(path, "abc")
    assert "\n" not in str(ei.value)


def _layout(mode: str) -> Layout:
    if mode == "v2":
        return Layout("v2", {}, Mount("/sys/fs/cgroup"))
    return Layout("hybrid", {"memory": Mount("/sys/fs/cgroup/memory", "/", ("memory",)),
                             "cpu": Mount("/sys/fs/cgroup/cpu,cpuacct", "/", ("cpu", "cpuacct")),
                             "cpuacct": Mount("/sys/fs/cgroup/cpu,cpuacct", "/", ("cpu", "cpuacct")),
                             "name=systemd": Mount("/sys/fs/cgroup/systemd")},
                  Mount("/sys/fs/cgroup/unified"))


def test_paths_are_the_scope_in_every_hierarchy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sd, "systemd_running", lambda: True)
    m = sd.new_systemd_manager("a-b.slice:pfx:c1", "c1", _layout("hybrid"))
    scope = "a.slice/a-b.slice/pfx-c1.scope"
    assert m.paths == {"memory": f"/sys/fs/cgroup/memory/{scope}",
                       "cpu": f"/sys/fs/cgroup/cpu,cpuacct/{scope}",
                       "cpuacct": f"/sys/fs/cgroup/cpu,cpuacct/{scope}",
                       "name=systemd": f"/sys/fs/cgroup/systemd/{scope}",
                       "unified": f"/sys/fs/cgroup/unified/{scope}"}
    m2 = sd.new_systemd_manager(None, "c2", _layout("v2"))
    assert m2.paths == {"unified": "/sys/fs/cgroup/system.slice/runc-c2.scope"}
    # Round trip through state.json, as state/kill/delete rebuild it.
    state = json.loads(json.dumps(m.to_state()))
    assert state["driver"] == "systemd" and state["unit"] == "pfx-c1.scope" and state["slice"] == "a-b.slice"
    again = manager_from_state(state)
    assert isinstance(again, sd.SystemdManager) and again.to_state() == m.to_state()
    # Nothing is created before the scope exists, so a crashed create leaves no directory to undo.
    assert m.to_intent()["created"] == []


def test_cpu_quota_rounded_up_to_systemd_steps() -> None:
    # 0.5 CPU: exact.
    assert sd.cpu_quota_props(50_000, 100_000) == (
        [("CPUQuotaPeriodUSec", ("t", 100_000)), ("CPUQuotaPerSecUSec", ("t", 500_000))], 50_000)
    # 12345 us per 100 ms = 123450 us/s -> rounded up to 130000 us/s (13 %), quota follows.
    props, quota = sd.cpu_quota_props(12_345, 0)
    assert props == [("CPUQuotaPerSecUSec", ("t", 130_000))] and quota == 13_000
    # Unlimited (-1) with a period: infinity.
    assert sd.cpu_quota_props(-1, 50_000)[0][-1] == ("CPUQuotaPerSecUSec", ("t", U64_MAX))
    assert sd.cpu_quota_props(0, 0) == ([], 0)


def test_cpuset_bits() -> None:
    assert sd.cpuset_bits("0", "w") == b"\x01"
    assert sd.cpuset_bits("0-2,7", "w") == b"\x87"
    assert sd.cpuset_bits("8", "w") == b"\x00\x01"
    for bad in ("x", "3-1", "-1"):
        with pytest.raises(ConfigError):
            sd.cpuset_bits(bad, "linux.resources.cpu.cpus")


def test_device_props() -> None:
    props = dict(sd.device_props([{"allow": False, "access": "rwm"},
                                  {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"},
                                  {"allow": True, "type": "b", "major": 8, "access": "r"}]))
    assert props["DevicePolicy"] == ("s", "strict")
    allowed = props["DeviceAllow"][1]
    assert ("/dev/char/10:200", "rw") in allowed and ("block-8", "r") in allowed
    # runc's default allow list follows the spec's rules.
    assert ("char-*", "m") in allowed and ("/dev/char/1:3", "rwm") in allowed
    assert ("char-136", "rwm") in allowed
    everything = dict(sd.device_props([{"allow": True, "access": "rwm"}]))
    assert everything == {"DevicePolicy": ("s", "auto"), "DeviceAllow": ("a(ss)", [])}


def test_resource_props_v2_and_v1() -> None:
    res = {"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
           "cpu": {"shares": 1024, "quota": 12_345, "period": 100_000, "cpus": "0-1"},
           "pids": {"limit": 0}, "blockIO": {"weight": 500}}
    props, files = sd.resource_props(res, "v2", skip_devices=True)
    p = dict(props)
    assert p["MemoryMax"] == ("t", 64 << 20) and p["MemoryLow"] == ("t", 32 << 20)
    assert p["MemorySwapMax"] == ("t", 64 << 20)
    assert p["CPUWeight"] == ("t", 39)  # 1 + (1024-2)*9999/262142
    assert p["CPUQuotaPerSecUSec"] == ("t", 130_000)
    assert p["AllowedCPUs"] == ("ay", b"\x03")
    assert p["TasksMax"] == ("t", 1)  # systemd refuses 0
    assert p["IOWeight"] == ("t", 1 + (500 - 10) * 9999 // 990)
    assert "DevicePolicy" not in p
    assert files["cpu"]["quota"] == 13_000 and res["cpu"]["quota"] == 12_345
    props1, _ = sd.resource_props(res, "hybrid")
    p1 = dict(props1)
    assert p1["MemoryLimit"] == ("t", 64 << 20) and p1["CPUShares"] == ("t", 1024)
    assert p1["BlockIOWeight"] == ("t", 500) and "MemoryMax" not in p1 and "DevicePolicy" in p1
    unlimited = dict(sd.resource_props({"memory": {"limit": -1}, "pids": {"limit": -1}}, "v2")[0])
    assert unlimited["MemoryMax"] == ("t", U64_MAX) and unlimited["TasksMax"] == ("t", U64_MAX)


def test_a_unit_we_did_not_start_is_never_stopped(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A create refused by systemd (UnitExists: somebody else's scope) undoes only its own dirs."""
    monkeypatch.setattr(sd, "systemd_running", lambda: True)
    m = sd.new_systemd_manager("system.slice:pfx:taken", "c", _layout("v2"))
    assert m.to_state()["started"] is False and m.to_intent()["started"] is False

    def no_dbus() -> None:
        raise AssertionError("destroy talked to systemd about a unit it never started")

    monkeypatch.setattr(m, "_connect", no_dbus)
    assert m.pids() == []  # create's cleanup kills what pids() lists
    mine = tmp_path / "made-by-us"
    mine.mkdir()
    m.created = [str(mine)]
    m.destroy()
    assert not mine.exists()
    m.started = True
    assert manager_from_state(json.loads(json.dumps(m.to_state()))).started is True
