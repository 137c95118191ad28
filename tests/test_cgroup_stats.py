"""cgroups/stats.py: the readers behind ``events``, against fake v1 and v2 cgroup directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ociruntime.cgroups import stats
from ociruntime.errors import OCIError

U64 = 2**64 - 1


def fake(d: Path, contents: dict[str, str]) -> str:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (d / name).write_text(text)
    return str(d)


V1_MEMORY = {
    "memory.stat": "cache 4096\nrss 8192\ntotal_cache 4096\n",
    "memory.usage_in_bytes": "12288\n", "memory.max_usage_in_bytes": "20480\n",
    "memory.limit_in_bytes": "67108864\n", "memory.failcnt": "3\n",
    "memory.memsw.usage_in_bytes": "12288\n", "memory.memsw.max_usage_in_bytes": "20480\n",
    "memory.memsw.limit_in_bytes": "9223372036854771712\n", "memory.memsw.failcnt": "0\n",
    "memory.kmem.usage_in_bytes": "0\n", "memory.kmem.max_usage_in_bytes": "0\n",
    "memory.kmem.limit_in_bytes": "9223372036854771712\n", "memory.kmem.failcnt": "0\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
}


def v1_tree(tmp_path: Path) -> dict[str, str]:
    return {
        "cpu": fake(tmp_path / "cpu", {"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n"}),
        "cpuacct": fake(tmp_path / "cpuacct", {
            "cpuacct.usage": "3000\n", "cpuacct.usage_percpu": "1000 2000 \n",
            "cpuacct.usage_all": "cpu user system\n0 600 400\n1 1500 500\n",
            "cpuacct.stat": "user 3\nsystem 2\n"}),
        "cpuset": fake(tmp_path / "cpuset", {
            "cpuset.cpus": "0-2,5\n", "cpuset.mems": "0\n", "cpuset.cpu_exclusive": "0\n",
            "cpuset.sched_load_balance": "1\n", "cpuset.sched_relax_domain_level": "-1\n"}),
        "memory": fake(tmp_path / "memory", V1_MEMORY),
        "pids": fake(tmp_path / "pids", {"pids.current": "4\n", "pids.max": "max\n"}),
        "blkio": fake(tmp_path / "blkio", {
            "blkio.bfq.io_serviced_recursive": "",  # present but empty: the group is skipped
            "blkio.throttle.io_serviced_recursive": "8:0 Read 5\n8:0 Write 6\nTotal 11\n",
            "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n"}),
        "hugetlb": fake(tmp_path / "hugetlb", {
            "hugetlb.2MB.usage_in_bytes": "2097152\n", "hugetlb.2MB.max_usage_in_bytes": "4194304\n",
            "hugetlb.2MB.failcnt": "1\n", "hugetlb.2MB.limit_in_bytes": "0\n"}),
        "unified": fake(tmp_path / "unified", {"cgroup.procs": ""}),
    }


def test_v1_stats_shape_and_values(tmp_path: Path) -> None:
    s = stats.collect("hybrid", v1_tree(tmp_path))
    assert list(s) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                       "network_interfaces"]
    assert s["cpu"] == {
        "usage": {"total": 3000, "percpu": [1000, 2000], "percpu_kernel": [400, 500],
                  "percpu_user": [600, 1500], "kernel": 20_000_000, "user": 30_000_000},
        "throttling": {"periods": 10, "throttledPeriods": 4, "throttledTime": 5000},
    }
    assert s["cpuset"]["cpus"] == [0, 1, 2, 5] and s["cpuset"]["mems"] == [0]
    assert s["cpuset"]["sched_load_balance"] == 1 and s["cpuset"]["sched_relax_domain_level"] == -1
    mem = s["memory"]
    assert mem["cache"] == 4096
    assert mem["usage"] == {"limit": 67108864, "usage": 12288, "max": 20480, "failcnt": 3}
    assert mem["swap"]["limit"] == 9223372036854771712
    # Go's omitempty: zero usage/max are left out, limit and failcnt never are.
    assert mem["kernel"] == {"limit": 9223372036854771712, "failcnt": 0}
    assert mem["kernelTCP"] == {"limit": 0, "failcnt": 0}  # no kmem.tcp files
    assert mem["raw"] == {"cache": 4096, "rss": 8192, "total_cache": 4096}
    assert s["pids"] == {"current": 4}  # "max" is no limit: 0, omitted
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096}, {"major": 8, "op": "Write"}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 5},
                                {"major": 8, "op": "Write", "value": 6}],
    }
    assert s["hugetlb"] == {"2MB": {"usage": 2097152, "max": 4194304, "failcnt": 1}}
    json.dumps(s)


def test_v1_missing_controllers_give_empty_sections(tmp_path: Path) -> None:
    s = stats.collect("v1", {"memory": str(tmp_path / "gone"), "pids": fake(tmp_path / "p", {})})
    assert s["cpu"] == {"usage": {"kernel": 0, "user": 0}, "throttling": {}}
    assert s["memory"]["usage"] == {"limit": 0, "failcnt": 0}
    assert s["pids"] == {} and s["blkio"] == {} and s["hugetlb"] == {}


def test_blkio_cfq_group_and_malformed(tmp_path: Path) -> None:
    names = ["sectors_recursive", "io_service_time_recursive", "io_wait_time_recursive",
             "io_merged_recursive", "io_queued_recursive", "time_recursive", "io_serviced_recursive",
             "io_service_bytes_recursive"]
    files = {f"blkio.{n}": "8:16 Read 7\n" for n in names}
    files["blkio.sectors_recursive"] = "8:16 99\n"
    d = fake(tmp_path / "cfq", files)
    out = stats.blkio_v1(d)
    assert out["sectorsRecursive"] == [{"major": 8, "minor": 16, "value": 99}]
    assert out["ioQueueRecursive"] == [{"major": 8, "minor": 16, "op": "Read", "value": 7}]
    assert len(out) == 8
    with pytest.raises(OCIError, match="malformed"):
        stats.parse_blkio("8:0 Read\n")


V2_FILES = {
    "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\n"
                "throttled_usec 20\n",
    "cpuset.cpus.effective": "0-1\n", "cpuset.mems.effective": "0\n",
    "memory.stat": "anon 4096\nfile 8192\n", "memory.current": "12288\n", "memory.max": "max\n",
    "memory.peak": "16384\n", "memory.events": "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
    "memory.swap.current": "100\n", "memory.swap.max": "max\n",
    "pids.current": "2\n", "pids.max": "100\n",
    "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
    "hugetlb.2MB.current": "0\n", "hugetlb.2MB.events": "max 2\n", "hugetlb.2MB.max": "max\n",
}


def test_v2_stats(tmp_path: Path) -> None:
    d = fake(tmp_path / "c", V2_FILES)
    s = stats.collect("v2", {"unified": d})
    assert s["cpu"] == {
        "usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000},
        "throttling": {"periods": 3, "throttledPeriods": 1, "throttledTime": 20_000},
    }
    assert s["cpuset"]["cpus"] == [0, 1]
    mem = s["memory"]
    assert mem["cache"] == 8192
    assert mem["usage"] == {"limit": U64, "usage": 12288, "max": 16384, "failcnt": 5}
    # swap is reported as memory+swap, like v1's memsw; an unlimited swap stays unlimited
    assert mem["swap"] == {"limit": U64, "usage": 12388, "failcnt": 0}
    assert s["pids"] == {"current": 2, "limit": 100}
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096},
                                    {"major": 8, "op": "Write", "value": 8192}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1},
                                {"major": 8, "op": "Write", "value": 2}],
    }
    assert s["hugetlb"] == {"2MB": {"failcnt": 2}}


def test_v2_swap_limit_adds_memory_limit(tmp_path: Path) -> None:
    d = fake(tmp_path / "c", {**V2_FILES, "memory.max": "1000\n", "memory.swap.max": "500\n"})
    assert stats.memory_v2(d)["swap"]["limit"] == 1500


def test_v2_missing_cgroup_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OCIError, match="does not exist"):
        stats.collect("v2", {"unified": str(tmp_path / "gone")})


def test_oom_kills_v1_and_v2(tmp_path: Path) -> None:
    mem = fake(tmp_path / "m", {"memory.oom_control": "oom_kill_disable 1\nunder_oom 1\noom_kill 4\n"})
    assert stats.oom_kills("hybrid", {"memory": mem}) == 4
    assert stats.oom_kills("v1", {"cpu": mem}) is None
    d = fake(tmp_path / "c", V2_FILES)
    assert stats.oom_kills("v2", {"unified": d}) == 1
    assert stats.oom_kills("v2", {"unified": fake(tmp_path / "e", {})}) is None


def test_helpers() -> None:
    assert stats.parse_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert stats.parse_list("\n") == []
    assert stats.parse_flat_keyed("a 1\nb x\nc 2 3\nd 4") == {"a": 1, "d": 4}


def test_non_integer_control_file(tmp_path: Path) -> None:
    d = fake(tmp_path / "p", {"pids.current": "lots\n"})
    with pytest.raises(OCIError, match="not an integer"):
        stats.pids_stats(d)


def test_oom_watch_catch_up_reports_only_new_kills(tmp_path: Path) -> None:
    from ociruntime.lifecycle.events import OomWatch

    mem = tmp_path / "m"
    fake(mem, {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    watch = OomWatch("hybrid", {"memory": str(mem)})
    assert watch.catch_up() == 0  # kills before the watch started are not new
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert watch.catch_up() == 3
    assert watch.catch_up() == 0
    watch.reported += 1  # one more announced by a wake-up, then counted by the kernel
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")
    assert watch.catch_up() == 1
    assert OomWatch.open("hybrid", {"cpu": str(mem)}) is None
