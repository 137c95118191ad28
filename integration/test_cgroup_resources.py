"""Every cgroup resource this host supports, applied by create and read back from outside (the
host's cgroup files) and inside (the container's read-only cgroup mount); device rules enforced."""

from __future__ import annotations

import json
import os

import pytest
from conftest import new_id

from ociruntime.cgroups import detect_layout

pytestmark = pytest.mark.root

LAYOUT = detect_layout()
V1 = LAYOUT.mode in ("v1", "hybrid")
needs_v1 = pytest.mark.skipif(not V1, reason="v1/hybrid files (pure v2: integration/test_cgroups_v2.py)")


def _blkdev() -> tuple[int, int] | None:
    st = os.stat("/")
    return (os.major(st.st_dev), os.minor(st.st_dev)) if os.major(st.st_dev) else None


RESOURCES = {
    "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10},
    "pids": {"limit": 50},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
}
# host file (controller, file) -> expected first token
EXPECT_V1 = {
    ("memory", "memory.limit_in_bytes"): str(64 << 20),
    ("memory", "memory.soft_limit_in_bytes"): str(32 << 20),
    ("memory", "memory.memsw.limit_in_bytes"): str(128 << 20),
    ("memory", "memory.swappiness"): "10",
    ("pids", "pids.max"): "50",
    ("cpu", "cpu.shares"): "512",
    ("cpu", "cpu.cfs_quota_us"): "50000",
    ("cpu", "cpu.cfs_period_us"): "100000",
    ("cpuset", "cpuset.cpus"): "0",
    ("cpuset", "cpuset.mems"): "0",
}


@needs_v1
def test_resources_read_back_outside_and_inside(rt, bundle) -> None:
    dev = _blkdev()
    expect = dict(EXPECT_V1)

    def mutate(cfg: dict) -> None:
        res = cfg["linux"].setdefault("resources", {})
        res.update(json.loads(json.dumps(RESOURCES)))
        if dev and os.path.exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"):
            rule = {"major": dev[0], "minor": dev[1], "rate": 1048576}
            res["blockIO"] = {"throttleReadBpsDevice": [rule]}
        cfg["linux"]["cgroupsPath"] = f"/ociruntime-test/{new_id()}"

    files = [f"/sys/fs/cgroup/{c}/{f}" for c, f in expect]
    b = bundle(["sh", "-c", "sleep 100"], mutate)
    cid = new_id()
    rt("run", "-d", "--bundle", str(b), cid, check=True)
    try:
        state = json.loads((rt.root / cid / "state.json").read_text())
        paths = state["cgroup"]["paths"]
        for (ctrl, fname), want in expect.items():
            got = open(os.path.join(paths[ctrl], fname)).read().split()[0]
            assert got == want, (ctrl, fname, got)
        if "blockIO" in json.loads((b / "config.json").read_text())["linux"]["resources"]:
            got = open(os.path.join(paths["blkio"], "blkio.throttle.read_bps_device")).read().split()
            assert got == [f"{dev[0]}:{dev[1]}", "1048576"]
        # inside: the same values through the container's own (read-only) cgroup mount
        script = "; ".join(f"head -n1 {f}" for f in files)
        inside = bundle(["sh", "-c", script], mutate)
        cfg = json.loads((inside / "config.json").read_text())
        first = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
        cfg["linux"]["cgroupsPath"] = first + "x"
        (inside / "config.json").write_text(json.dumps(cfg))
        p = rt("run", "--bundle", str(inside), new_id())
        assert p.returncode == 0, p.stderr
        assert [line.split()[0] for line in p.stdout.decode().splitlines()] == list(expect.values())
    finally:
        rt("delete", "--force", cid, check=True)


@needs_v1
def test_pids_limit_enforced(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["resources"]["pids"] = {"limit": 5}

    script = "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; wait"
    p = rt("run", "--bundle", str(bundle(["sh", "-c", script], mutate)), new_id())
    # busybox sh reports the EAGAIN from fork(2) and exits 2 once pids.max is reached
    assert b"can't fork: Resource temporarily unavailable" in p.stdout + p.stderr, (p.stdout, p.stderr)


def test_device_rules_enforced(rt, bundle) -> None:
    """/dev/fuse exists in the container; opening it is refused unless the cgroup allows it."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this host")

    def with_node(allow: bool, access: str = "rw"):
        def mutate(cfg: dict) -> None:
            cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                        "fileMode": 0o666}]
            if allow:
                cfg["linux"]["resources"]["devices"].append(
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": access})
        return mutate

    denied = rt("run", "--bundle", str(bundle(["checker", "access", "/dev/fuse", "/dev/null"],
                                               with_node(False))), new_id())
    assert denied.returncode == 0, denied.stderr
    r = json.loads(denied.stdout)
    assert r["/dev/fuse"]["read"] == 1 and r["/dev/fuse"]["write"] == 1  # EPERM
    assert r["/dev/null"]["read"] == 0 and r["/dev/null"]["write"] == 0
    allowed = rt("run", "--bundle", str(bundle(["checker", "access", "/dev/fuse"], with_node(True))),
                 new_id())
    r = json.loads(allowed.stdout)
    assert r["/dev/fuse"]["read"] != 1 and r["/dev/fuse"]["write"] != 1  # not refused by the cgroup
    # Unknown access letters are ignored with a warning, as runc ignores them: "rwz" is "rw".
    odd = rt("run", "--bundle", str(bundle(["checker", "access", "/dev/fuse"], with_node(True, "rwz"))),
             new_id())
    assert odd.returncode == 0, odd.stderr
    r = json.loads(odd.stdout)
    assert r["/dev/fuse"]["read"] != 1 and r["/dev/fuse"]["write"] != 1
    warnings = [e["msg"] for e in map(json.loads, rt.log.read_text().splitlines()) if e["level"] == "warning"]
    assert warnings == ['config.json: linux.resources.devices[1].access: unknown access "z" ignored, '
                        '"rw" is used']


def test_kernel_memory_accepted_with_a_warning(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["resources"]["memory"] = {"kernel": 64 << 20, "kernelTCP": 16 << 20}

    p = rt("run", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert p.returncode == 0, p.stderr
    levels = [json.loads(line) for line in rt.log.read_text().splitlines()]
    msgs = [e["msg"] for e in levels if e["level"] == "warning"]
    assert any("memory.kernel is deprecated" in m for m in msgs), levels
    assert any("memory.kernelTCP is deprecated" in m for m in msgs), levels
