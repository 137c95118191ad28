"""Unit tests for ociruntime.cgroups: writers against tmp_path, layout, paths, fake trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ociruntime.cgroups import (
    Layout,
    Mount,
    detect_layout,
    devices,
    files,
    manager_from_state,
    new_manager,
    v1,
    v2,
)
from ociruntime.cgroups.layout import check_cgroups_path, parse_proc_cgroup, resolve_paths
from ociruntime.errors import ConfigError, OCIError

HYBRID = """\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1 = """\
25 18 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/pids rw shared:14 - cgroup cgroup rw,pids
31 25 0:28 /docker/abc /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
"""
V2 = """\
22 1 0:20 / /proc rw - proc proc rw
27 22 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""


# --- files -----------------------------------------------------------------------------------
def test_write_one_value_and_read_back(tmp_path: Path) -> None:
    (tmp_path / "pids.max").write_text("")
    files.write(str(tmp_path), "pids.max", "42")
    assert files.read(str(tmp_path), "pids.max") == "42"
    assert files.read_int(str(tmp_path), "pids.max") == 42


def test_write_missing_file_names_file_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        files.write(str(tmp_path), "memory.memsw.limit_in_bytes", "5")
    msg = str(ei.value)
    assert msg.startswith(f'write {tmp_path}/memory.memsw.limit_in_bytes: "5": no such file or directory')
    assert not (tmp_path / "memory.memsw.limit_in_bytes").exists()  # never created


def test_write_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("")
    (tmp_path / "pids.max").symlink_to(target)
    with pytest.raises(OCIError, match=r"pids\.max"):
        files.write(str(tmp_path), "pids.max", "1")
    assert target.read_text() == ""


# --- layout ----------------------------------------------------------------------------------
def test_detect_hybrid() -> None:
    lay = detect_layout(HYBRID)
    assert lay.mode == "hybrid"
    assert set(lay.v1) == {"cpu", "cpuacct", "memory", "devices", "name=systemd"}
    assert lay.unified == Mount("/sys/fs/cgroup/unified", "/")


def test_detect_v1_comounted_and_mount_root() -> None:
    lay = detect_layout(V1)
    assert lay.mode == "v1" and lay.unified is None
    assert lay.v1["cpu"] is lay.v1["cpuacct"]
    assert lay.v1["cpu"].mountpoint == "/sys/fs/cgroup/cpu,cpuacct"
    assert lay.v1["memory"].root == "/docker/abc"
    assert "release_agent=/x" not in lay.v1 and "xattr" not in lay.v1


def test_detect_v2_and_none() -> None:
    lay = detect_layout(V2)
    assert lay.mode == "v2" and lay.v1 == {} and lay.unified.mountpoint == "/sys/fs/cgroup"
    assert detect_layout("22 1 0:20 / /proc rw - proc proc rw\n").mode == "none"


def test_detect_unescapes_mountpoint() -> None:
    lay = detect_layout("27 22 0:25 / /tmp/a\\040b rw - cgroup2 cgroup2 rw\n")
    assert lay.unified.mountpoint == "/tmp/a b"


def test_detect_this_host_matches_proc_self_cgroup() -> None:
    lay = detect_layout()
    own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    for name in lay.v1:
        assert name in own
    if lay.unified is not None:
        assert "unified" in own


def test_under_restricts_to_root() -> None:
    assert detect_layout(HYBRID).under("/elsewhere").mode == "none"
    assert detect_layout(V2).under("/sys/fs/cgroup").mode == "v2"


# --- paths -----------------------------------------------------------------------------------
def test_default_path_is_container_id_relative() -> None:
    assert check_cgroups_path(None, "abc") == "abc"
    assert check_cgroups_path("", "abc") == "abc"
    assert check_cgroups_path("/libpod_parent//libpod-x/", "abc") == "/libpod_parent/libpod-x"
    assert check_cgroups_path("a/./b", "abc") == "a/b"


@pytest.mark.parametrize("bad", ["/a/../b", "..", "a/..", "/x\0y", "/", "//", "system.slice:docker:abc"])
def test_bad_paths_rejected(bad: str) -> None:
    with pytest.raises(ConfigError) as ei:
        check_cgroups_path(bad, "abc")
    assert "\n" not in str(ei.value)


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd is PID 1 here")
def test_systemd_driver_refused_without_systemd() -> None:
    with pytest.raises(OCIError) as ei:
        new_manager("system.slice:docker:abc", "abc", systemd=True)
    assert not isinstance(ei.value, ConfigError)
    assert str(ei.value) == "systemd not running on this host, cannot use systemd as cgroup manager"


def test_resolve_absolute_hybrid() -> None:
    paths = resolve_paths("/libpod_parent/c", detect_layout(HYBRID))
    assert paths["memory"] == "/sys/fs/cgroup/memory/libpod_parent/c"
    assert paths["name=systemd"] == "/sys/fs/cgroup/systemd/libpod_parent/c"
    assert paths["unified"] == "/sys/fs/cgroup/unified/libpod_parent/c"


def test_resolve_relative_v1_uses_own_cgroup_minus_mount_root() -> None:
    own = {
        "cpu": "/user/1",
        "cpuacct": "/user/1",
        "pids": "/",
        "memory": "/docker/abc/inner",
        "name=systemd": "/s",
    }
    paths = resolve_paths("ctr", detect_layout(V1), own)
    assert paths["cpu"] == "/sys/fs/cgroup/cpu,cpuacct/user/1/ctr"
    assert paths["pids"] == "/sys/fs/cgroup/pids/ctr"
    assert paths["memory"] == "/sys/fs/cgroup/memory/inner/ctr"


def test_resolve_relative_v2_uses_parent_of_own_cgroup() -> None:
    paths = resolve_paths("ctr", detect_layout(V2), {"unified": "/user.slice/session-1.scope"})
    assert paths == {"unified": "/sys/fs/cgroup/user.slice/ctr"}


# --- v1 writers (tmp dir stands in for a cgroup dir) -----------------------------------------
@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record (file, value) for every write instead of writing."""
    log: list[tuple[str, str]] = []
    monkeypatch.setattr(files, "write", lambda d, name, value: log.append((name, value)))
    return log


def _touch(d: Path, **contents: str) -> None:
    for name, text in contents.items():
        (d / name.replace("__", ".")).write_text(text)


def test_v1_memory_grow_writes_memsw_first(tmp_path: Path, rec: list) -> None:
    _touch(tmp_path, memory__limit_in_bytes="1000", memory__memsw__limit_in_bytes="")
    v1.apply_memory(str(tmp_path), {"limit": 4096, "swap": 8192, "reservation": 2048, "kernel": 5})
    assert rec == [
        ("memory.memsw.limit_in_bytes", "8192"),
        ("memory.limit_in_bytes", "4096"),
        ("memory.soft_limit_in_bytes", "2048"),
    ]


def test_v1_memory_shrink_writes_limit_first(tmp_path: Path, rec: list) -> None:
    _touch(tmp_path, memory__limit_in_bytes="1000000")
    v1.apply_memory(str(tmp_path), {"limit": 4096, "swap": 8192})
    assert rec == [("memory.limit_in_bytes", "4096"), ("memory.memsw.limit_in_bytes", "8192")]


def test_v1_memory_unlimited_sets_memsw_unlimited_when_present(tmp_path: Path, rec: list) -> None:
    _touch(tmp_path, memory__limit_in_bytes="4096", memory__memsw__limit_in_bytes="")
    v1.apply_memory(
        str(tmp_path), {"limit": -1, "swappiness": 10, "disableOOMKiller": True, "useHierarchy": True}
    )
    assert rec == [
        ("memory.memsw.limit_in_bytes", "-1"),
        ("memory.limit_in_bytes", "-1"),
        ("memory.swappiness", "10"),
        ("memory.oom_control", "1"),
        ("memory.use_hierarchy", "1"),
    ]


def test_v1_memory_real_files(tmp_path: Path) -> None:
    _touch(tmp_path, memory__limit_in_bytes="", memory__soft_limit_in_bytes="")
    v1.apply_memory(str(tmp_path), {"limit": 67108864, "reservation": 33554432})
    assert (tmp_path / "memory.limit_in_bytes").read_text() == "67108864"
    assert (tmp_path / "memory.soft_limit_in_bytes").read_text() == "33554432"


def test_v1_memory_swap_without_accounting_names_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"memory\.memsw\.limit_in_bytes: \"8192\""):
        v1.apply_memory(str(tmp_path), {"swap": 8192})


@pytest.mark.parametrize(
    ("memory", "match"),
    [({"limit": -2}, "out of range"), ({"limit": True}, "integer"), ({"swappiness": 101}, "0..100")],
)
def test_v1_memory_bad_values(tmp_path: Path, rec: list, memory: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        v1.apply_memory(str(tmp_path), memory)


def test_check_before_update_rejects_limit_below_usage(tmp_path: Path, rec: list) -> None:
    _touch(tmp_path, memory__usage_in_bytes="5000", memory__current="5000")
    with pytest.raises(ConfigError, match="below usage 5000"):
        v1.apply_memory(str(tmp_path), {"limit": 4096, "checkBeforeUpdate": True})
    with pytest.raises(ConfigError, match="below usage 5000"):
        v2.apply_memory(str(tmp_path), {"limit": 4096, "checkBeforeUpdate": True})
    v1.apply_memory(str(tmp_path), {"limit": 8192, "checkBeforeUpdate": True})
    assert rec == [("memory.limit_in_bytes", "8192")]


def test_v1_cpu(tmp_path: Path, rec: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "read_int", lambda d, n: 512)
    v1.apply_cpu(
        str(tmp_path),
        {
            "shares": 512,
            "quota": 150000,
            "period": 100000,
            "burst": 1000,
            "realtimePeriod": 9,
            "realtimeRuntime": 7,
            "idle": 0,
            "cpus": "0",
        },
    )
    assert rec == [
        ("cpu.rt_period_us", "9"),
        ("cpu.rt_runtime_us", "7"),
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_burst_us", "1000"),
        ("cpu.cfs_quota_us", "150000"),
        ("cpu.idle", "0"),
    ]


def test_v1_cpu_shares_clamped_by_kernel_is_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path, cpu__shares="")
    # A regular file reads back what was written, so simulate the kernel's clamp on write.
    orig = files.write

    def clamp(d: str, name: str, value: str) -> None:
        orig(d, name, "262144" if name == "cpu.shares" else value)

    monkeypatch.setattr(files, "write", clamp)
    with pytest.raises(ConfigError, match=r"cpu\.shares: 999999"):
        v1.apply_cpu(str(tmp_path), {"shares": 999999})


def test_v1_cpuset_and_pids(tmp_path: Path) -> None:
    _touch(tmp_path, cpuset__cpus="", cpuset__mems="", pids__max="")
    v1.apply_cpuset(str(tmp_path), {"cpus": "0-1", "mems": "0", "shares": 5})
    assert (tmp_path / "cpuset.cpus").read_text() == "0-1"
    assert (tmp_path / "cpuset.mems").read_text() == "0"
    v1.apply_pids(str(tmp_path), {"limit": 50})
    assert (tmp_path / "pids.max").read_text() == "50"


@pytest.mark.parametrize(("limit", "want"), [(0, "max"), (-1, "max"), (1, "1")])
def test_pids_values(limit: int, want: str) -> None:
    assert v1.pids_value({"limit": limit}) == want


def test_v1_devices_order(rec: list) -> None:
    rules = devices.parse_rules(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": True, "type": "c", "major": 136, "access": "rwm"},
            {"allow": False, "type": "b", "major": -1, "minor": 5},
        ]
    )
    devices.apply_v1("/x", rules)
    assert rec == [
        ("devices.deny", "a"),
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:3 rw"),
        ("devices.allow", "c 136:* rwm"),
        ("devices.deny", "b *:5 rwm"),
    ]


def test_effective_rules_append_runc_defaults() -> None:
    rules = devices.effective_rules([{"allow": False, "access": "rwm"}])
    assert [r.v1_line() for r in rules][:4] == ["a *:* rwm", "c *:* m", "b *:* m", "c 1:3 rwm"]
    assert "c 5:2 rwm" in [r.v1_line() for r in rules]


@pytest.mark.parametrize(
    "bad",
    [
        [{"allow": True, "type": "p"}],
        [{"allow": True, "access": 7}],
        [{"allow": "yes"}],
        [{"type": "c"}],
        [{"allow": True, "major": 1.5}],
        {"allow": True},
    ],
)
def test_device_rules_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"linux\.resources\.devices"):
        devices.parse_rules(bad)


def test_device_access_unknown_letters_ignored_with_a_warning() -> None:
    # The official schema allows any string; runc reads it as a set of r, w, m.
    warnings: list[str] = []
    rules = devices.parse_rules([
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wxr"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "mmrr"},
        {"allow": False, "type": "c", "major": 1, "minor": 7, "access": "xyz"},
    ], warnings.append)
    assert [r.v1_line() for r in rules] == ["c 1:3 rw", "c 1:5 rm"]
    assert warnings == [
        'linux.resources.devices[0].access: unknown access "x" ignored, "rw" is used',
        'linux.resources.devices[2].access: unknown access "xyz" ignored, the rule has no effect',
    ]


def test_allows_everything() -> None:
    assert devices.allows_everything(devices.parse_rules([{"allow": True, "access": "rwm"}]))
    assert not devices.allows_everything(devices.parse_rules([{"allow": False, "access": "rwm"}]))
    assert not devices.allows_everything(devices.parse_rules([{"allow": True, "access": "rw"}]))
    assert not devices.allows_everything(
        devices.parse_rules([{"allow": True}, {"allow": False, "type": "c", "major": 1, "minor": 3}])
    )


def test_v1_blkio_bfq_fallback_and_throttles(tmp_path: Path, rec: list) -> None:
    _touch(tmp_path, blkio__bfq__weight="")
    v1.apply_blkio(
        str(tmp_path),
        {
            "weight": 500,
            "leafWeight": 300,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 200, "leafWeight": 100}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
        },
    )
    assert rec == [
        ("blkio.bfq.weight", "500"),
        ("blkio.leaf_weight", "300"),
        ("blkio.bfq.weight_device", "8:0 200"),
        ("blkio.leaf_weight_device", "8:0 100"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_iops_device", "8:16 100"),
    ]


def test_hugetlb_v1_v2(tmp_path: Path, rec: list) -> None:
    _touch(tmp_path, **{"hugetlb__2MB__rsvd__limit_in_bytes": ""})
    v1.apply_hugetlb(str(tmp_path), [{"pageSize": "2MB", "limit": 4194304}])
    v2.apply_hugetlb(str(tmp_path), [{"pageSize": "1GB", "limit": 0}])
    assert rec == [
        ("hugetlb.2MB.limit_in_bytes", "4194304"),
        ("hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
        ("hugetlb.1GB.max", "0"),
    ]
    with pytest.raises(ConfigError, match="pageSize"):
        v1.apply_hugetlb(str(tmp_path), [{"pageSize": "../2MB", "limit": 1}])


def test_network_and_rdma(tmp_path: Path, rec: list) -> None:
    v1.apply_net_cls(str(tmp_path), {"classID": 1048577})
    v1.apply_net_prio(
        str(tmp_path), {"priorities": [{"name": "eth0", "priority": 5}, {"name": "lo", "priority": 2}]}
    )
    v1.apply_rdma(
        str(tmp_path), {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaObjects": 1}}
    )
    assert rec == [
        ("net_cls.classid", "1048577"),
        ("net_prio.ifpriomap", "eth0 5"),
        ("net_prio.ifpriomap", "lo 2"),
        ("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
        ("rdma.max", "mlx4_0 hca_object=1"),
    ]


# --- v2 writers ------------------------------------------------------------------------------
@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (262144, 10000), (0, 0)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert v2.shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("swap", "limit", "want"), [(0, -1, -1), (-1, 100, -1), (0, 100, 0), (300, 100, 200), (100, 100, 0)]
)
def test_swap_to_v2(swap: int, limit: int, want: int) -> None:
    assert v2.swap_to_v2(swap, limit) == want


@pytest.mark.parametrize(("swap", "limit"), [(100, 0), (100, -1), (50, 100)])
def test_swap_to_v2_invalid(swap: int, limit: int) -> None:
    with pytest.raises(ConfigError, match=r"memory\.swap"):
        v2.swap_to_v2(swap, limit)


def test_v2_memory(tmp_path: Path, rec: list) -> None:
    v2.apply_memory(
        str(tmp_path), {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "kernelTCP": 1}
    )
    assert rec == [("memory.swap.max", "67108864"), ("memory.max", "67108864"), ("memory.low", "33554432")]
    rec.clear()
    v2.apply_memory(str(tmp_path), {"limit": 100, "swap": 100})  # swap == limit: no swap at all
    assert rec == [("memory.swap.max", "0"), ("memory.max", "100")]
    rec.clear()
    v2.apply_memory(str(tmp_path), {"limit": -1})
    assert rec == [("memory.swap.max", "max"), ("memory.max", "max")]


@pytest.mark.parametrize("memory", [{"swappiness": 10}, {"disableOOMKiller": True}, {"useHierarchy": False}])
def test_v2_memory_unsupported(tmp_path: Path, rec: list, memory: dict) -> None:
    with pytest.raises(ConfigError, match="not supported on this cgroup layout"):
        v2.apply_memory(str(tmp_path), memory)


def test_v2_cpu(tmp_path: Path, rec: list) -> None:
    v2.apply_cpu(str(tmp_path), {"shares": 1024, "quota": 150000, "period": 100000, "burst": 5, "idle": 1})
    assert rec == [
        ("cpu.idle", "1"),
        ("cpu.weight", "39"),
        ("cpu.max", "150000 100000"),
        ("cpu.max.burst", "5"),
    ]
    rec.clear()
    v2.apply_cpu(str(tmp_path), {"quota": -1, "period": 50000})
    assert rec == [("cpu.max", "max 50000")]
    with pytest.raises(ConfigError, match="realtime"):
        v2.apply_cpu(str(tmp_path), {"realtimeRuntime": 5})


def test_v2_io_weight_conversion_and_bfq(tmp_path: Path, rec: list) -> None:
    spec = {"weight": 10, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 5}]}  # fmt: skip
    v2.apply_io(str(tmp_path), spec)
    assert rec == [("io.weight", "1"), ("io.weight", "8:0 10000"), ("io.max", "8:0 wbps=5")]
    rec.clear()
    _touch(tmp_path, io__bfq__weight="")
    v2.apply_io(str(tmp_path), spec)
    assert rec[:2] == [("io.bfq.weight", "10"), ("io.bfq.weight", "8:0 1000")]
    with pytest.raises(ConfigError, match="leafWeight"):
        v2.apply_io(str(tmp_path), {"leafWeight": 10})


def test_v2_unified(tmp_path: Path) -> None:
    _touch(tmp_path, memory__high="")
    v2.apply_unified(str(tmp_path), {"memory.high": "1073741824"})
    assert (tmp_path / "memory.high").read_text() == "1073741824"
    for key in ("../memory.high", "a/b", "memory..high", "", "cgroup"):
        with pytest.raises(ConfigError, match="unified"):
            v2.apply_unified(str(tmp_path), {key: "1"})


# --- manager on a fake tree ------------------------------------------------------------------
def _fake(
    tmp_path: Path, mode: str, ctrls: tuple[str, ...] = ("memory", "pids", "devices", "freezer")
) -> Layout:
    v1m = {}
    if mode != "v2":
        for c in ctrls:
            (tmp_path / c).mkdir()
            v1m[c] = Mount(str(tmp_path / c))
    unified = None
    if mode != "v1":
        u = tmp_path / ("unified" if mode == "hybrid" else "")
        u.mkdir(exist_ok=True)
        unified = Mount(str(u))
    return Layout(mode, v1m, unified)


def _all_dirs(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_dir()}


def test_create_destroy_removes_only_what_it_made(tmp_path: Path) -> None:
    lay = _fake(tmp_path, "hybrid")
    (tmp_path / "memory" / "libpod_parent").mkdir()  # pre-existing parent in one hierarchy
    before = _all_dirs(tmp_path)
    mgr = new_manager("/libpod_parent/libpod-1", "id", root=str(tmp_path), layout=lay)
    assert set(mgr.paths) == {"memory", "pids", "devices", "freezer", "unified"}
    assert not mgr.exists()
    mgr.create()
    assert mgr.exists()
    assert (tmp_path / "unified" / "libpod_parent" / "libpod-1").is_dir()
    state = mgr.to_state()
    assert str(tmp_path / "memory" / "libpod_parent") not in state["created"]
    assert str(tmp_path / "pids" / "libpod_parent") in state["created"]
    # a sub-cgroup made by the container is removed too
    (tmp_path / "pids" / "libpod_parent" / "libpod-1" / "sub").mkdir()
    again = manager_from_state(state)
    assert again.paths == mgr.paths
    again.destroy()
    assert _all_dirs(tmp_path) == before
    again.destroy()  # idempotent
    assert not again.is_frozen()  # gone means not frozen, not an error


def test_destroy_keeps_created_parent_still_in_use(tmp_path: Path) -> None:
    lay = _fake(tmp_path, "v2")
    a = new_manager("/shared/a", "a", root=str(tmp_path), layout=lay)
    a.create()
    b = new_manager("/shared/b", "b", root=str(tmp_path), layout=lay)
    b.create()
    a.destroy()
    assert (tmp_path / "shared" / "b").is_dir()
    b.destroy()
    assert (tmp_path / "shared").is_dir()  # b did not create it; a's destroy could not remove it
    assert not (tmp_path / "shared" / "b").exists()


def test_state_round_trip_is_json(tmp_path: Path) -> None:
    import json

    mgr = new_manager("/x/y", "id", root=str(tmp_path), layout=_fake(tmp_path, "v1"))
    mgr.create()
    state = json.loads(json.dumps(mgr.to_state()))
    assert manager_from_state(state).to_state() == mgr.to_state()
    mgr.destroy()
    with pytest.raises(OCIError, match="cgroup state"):
        manager_from_state({"driver": "cgroupfs", "mode": "v1", "paths": {"memory": "rel"}, "mounts": {}})
    with pytest.raises(OCIError, match="cgroup state"):
        manager_from_state({"driver": "systemd"})
    with pytest.raises(OCIError, match="unknown driver"):
        manager_from_state({"driver": "other"})


def test_no_cgroup_under_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OCIError, match="no cgroup filesystem"):
        new_manager("/x", "id", root=str(tmp_path), layout=detect_layout(HYBRID))


def test_set_resources_dispatch_v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = new_manager("/c", "id", root=str(tmp_path), layout=_fake(tmp_path, "hybrid"))
    mgr.create()
    log: list[tuple[str, str, str]] = []
    monkeypatch.setattr(files, "write", lambda d, n, v: log.append((os.path.relpath(d, tmp_path), n, v)))
    mgr.set_resources(
        {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 2048}, "blockIO": {}}
    )
    assert log[0] == ("devices/c", "devices.deny", "a")
    assert ("devices/c", "devices.allow", "c 1:3 rwm") in log
    assert log[-1] == ("pids/c", "pids.max", "2048")
    log.clear()
    mgr.set_resources({"pids": {"limit": 5}}, skip_devices=True)
    assert log == [("pids/c", "pids.max", "5")]
    for res, what in [
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}, "hugepageLimits"),
        ({"cpu": {"shares": 2}}, "cpu"),
        ({"network": {"classID": 1}}, "network.classID"),
        ({"bogus": {}}, "bogus"),
    ]:
        with pytest.raises(ConfigError, match=rf"linux\.resources\.{what}: "):
            mgr.set_resources(res, skip_devices=True)
    # empty sections need no controller
    mgr.set_resources({"hugepageLimits": [], "cpu": {}, "network": {"priorities": []}}, skip_devices=True)


def test_set_resources_v2_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = new_manager("/c", "id", root=str(tmp_path), layout=_fake(tmp_path, "v2"))
    log: list[tuple[str, str]] = []
    monkeypatch.setattr(files, "write", lambda d, n, v: log.append((n, v)))
    # device rules on v2 are an eBPF program (tests/test_ebpf.py); here only the file writes
    mgr.set_resources({"pids": {"limit": 0}}, skip_devices=True)
    assert log == [("pids.max", "max")]
    with pytest.raises(ConfigError, match="network"):
        mgr.set_resources({"network": {"classID": 1}}, skip_devices=True)


@pytest.mark.parametrize(("rule", "lines"), [
    ({"allow": True, "type": "a", "access": "rwm"}, ["a *:* rwm"]),
    ({"allow": True, "type": "a", "major": 1, "minor": 3, "access": "r"}, ["c 1:3 r", "b 1:3 r"]),
    ({"allow": False, "type": "a", "access": "w"}, ["c *:* w", "b *:* w"]),
    ({"allow": True, "type": "c", "major": 10, "access": "rwm"}, ["c 10:* rwm"]),
])
def test_v1_lines_never_widen_type_a(rule: dict, lines: list[str]) -> None:
    """The v1 kernel reads any "a ..." line as all devices: narrower type-a rules are split."""
    from ociruntime.cgroups import devices

    (parsed,) = devices.parse_rules([rule])
    assert parsed.v1_lines() == lines


def test_v1_without_devices_controller_refuses_restrictions(tmp_path: Path) -> None:
    mgr = new_manager("/c", "id", root=str(tmp_path), layout=_fake(tmp_path, "v1", ("pids",)))
    with pytest.raises(ConfigError, match="no devices cgroup controller"):
        mgr.set_resources({"devices": []})


def test_pids_recursive_and_freezer_files(tmp_path: Path) -> None:
    mgr = new_manager("/c", "id", root=str(tmp_path), layout=_fake(tmp_path, "v1"))
    mgr.create()
    pids_dir = tmp_path / "pids" / "c"
    (pids_dir / "cgroup.procs").write_text("10\n12\n")
    (pids_dir / "sub").mkdir()
    (pids_dir / "sub" / "cgroup.procs").write_text("11\n")
    assert mgr.pids() == [10, 11, 12]
    (tmp_path / "freezer" / "c" / "freezer.state").write_text("THAWED\n")
    assert not mgr.is_frozen()
    mgr.freeze()
    assert mgr.is_frozen()


def test_v2_enables_parent_controllers(tmp_path: Path) -> None:
    lay = _fake(tmp_path, "v2")
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    mgr = new_manager("/a/b", "id", root=str(tmp_path), layout=lay)
    mgr.create()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    mgr.destroy()
    assert not (tmp_path / "a").exists()


def test_v2_period_only_update_keeps_quota(tmp_path: Path) -> None:
    """cpu.max takes the quota from every line: a period-only update must carry the current one."""
    from ociruntime.cgroups import v2

    (tmp_path / "cpu.max").write_text("50000 100000\n")
    (tmp_path / "cpu.weight").write_text("100\n")
    v2.apply_cpu(str(tmp_path), {"period": 200000})
    assert (tmp_path / "cpu.max").read_text().split() == ["50000", "200000"]
    (tmp_path / "cpu.max").write_text("max 100000\n")
    v2.apply_cpu(str(tmp_path), {"period": 300000})
    assert (tmp_path / "cpu.max").read_text().split() == ["max", "300000"]


def test_mountinfo_unescape_matches_the_kernels_octal_escapes() -> None:
    import re

    from ociruntime.linux.mountinfo import unescape

    samples = [r"/a\040b", r"/x\\y", r"\134", r"\12", r"a\0400", r"\011\012\134\040", "plain", "\\", r"\8888"]
    for s in samples:
        assert unescape(s) == re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s), s


def test_container_view_names_directories_like_the_host() -> None:
    """runc's /sys/fs/cgroup inside: host directory names (systemd, cpu,cpuacct), not "name=x"."""
    from ociruntime.cgroups.layout import container_view

    paths = {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct/c",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/c",
        "memory": "/sys/fs/cgroup/memory/c",
        "name=systemd": "/sys/fs/cgroup/systemd/c",
        "name=odd": "/sys/fs/cgroup/elsewhere/c",
        "unified": "/sys/fs/cgroup/unified/c",
    }
    mounts = {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "name=systemd": "/sys/fs/cgroup/systemd",
        "name=odd": "/sys/fs/cgroup/elsewhere",
        "unified": "/sys/fs/cgroup/unified",
    }
    dirs, data = container_view(paths, mounts)
    assert dirs == {
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/c",
        "memory": "/sys/fs/cgroup/memory/c",
        "systemd": "/sys/fs/cgroup/systemd/c",
        "elsewhere": "/sys/fs/cgroup/elsewhere/c",
        "unified": "/sys/fs/cgroup/unified/c",
    }
    assert data == {
        "cpu,cpuacct": "cpu,cpuacct",
        "memory": "memory",
        "systemd": "none,name=systemd",
        "elsewhere": "none,name=odd",
    }
