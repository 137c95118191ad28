"""Containers on a pure cgroup v2 host: limits in the cgroup2 files, seen from both sides.

These tests need /sys/fs/cgroup to be the one cgroup2 mount (no v1 hierarchy at all), so on our
hybrid machines they skip; ``make test-cgroupv2`` runs them in a qemu guest that boots with
``cgroup_no_v1=all`` (integration/v2guest/).  The host side of each check reads the container's
cgroup directory directly; the inside side runs the static checker in the container.

Resource tests allow every device on purpose: device rules on v2 are an eBPF program, which the
device tests at the end cover, so a missing device filter does not hide what these check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import new_id

from ociruntime.cgroups import detect_layout

pytestmark = [pytest.mark.root, pytest.mark.cgroupv2]

CGROUP = "/sys/fs/cgroup"
_layout = detect_layout()
if _layout.mode != "v2" or _layout.unified is None or _layout.unified.mountpoint != CGROUP:
    pytest.skip(f"needs a pure cgroup v2 host (cgroup2 alone at {CGROUP}); run make test-cgroupv2",
                allow_module_level=True)

MiB = 1 << 20
ALLOW_ALL = [{"allow": True, "access": "rwm"}]
LIMITS = {
    "memory": {"limit": 64 * MiB, "swap": 96 * MiB, "reservation": 16 * MiB},
    "pids": {"limit": 42},
    "cpu": {"shares": 2048, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
}
# The same limits as cgroup v2 writes them (runc's conversions, see ociruntime/cgroups/v2.py).
WANT = {
    "memory.max": str(64 * MiB),
    "memory.swap.max": str(32 * MiB),  # v1's memory+swap minus the memory limit
    "memory.low": str(16 * MiB),
    "pids.max": "42",
    "cpu.weight": str(1 + ((2048 - 2) * 9999) // 262142),
    "cpu.max": "50000 100000",
    "cpuset.cpus": "0",
    "cpuset.mems": "0",
}
EPERM, ENXIO, EROFS = 1, 6, 30
# Major 42 is reserved for demos (Documentation/admin-guide/devices.txt) and has no driver: a
# node of it opens with ENXIO when the device filter lets it through and EPERM when it does not.
DEMO_NODE = {"path": "/dev/demo42", "type": "c", "major": 42, "minor": 0, "fileMode": 0o666,
             "uid": 0, "gid": 0}


def limited(cg: str, resources: dict | None = None, devices: list | None = None):
    """A mutate function: cgroupsPath ``cg``, the given resources, and device rules."""

    def mutate(cfg: dict) -> None:
        cfg["linux"]["cgroupsPath"] = cg
        res = dict(resources or {})
        res["devices"] = ALLOW_ALL if devices is None else devices
        cfg["linux"]["resources"] = res

    return mutate


def run_checker(rt, bundle, args: list[str], mutate) -> dict:
    p = rt("run", "--bundle", str(bundle(["checker", *args], mutate)), new_id())
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def cgroup_mount(mountinfo: str) -> tuple[str, set[str], str]:
    """(root, per-mount options, fstype) of the /sys/fs/cgroup mount in mountinfo text."""
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        if f[4] == CGROUP:
            return f[3], set(f[5].split(",")), right.split()[0]
    raise AssertionError(f"no {CGROUP} mount in:\n{mountinfo}")


def test_limits_in_the_containers_cgroup2_files(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    cid = new_id()
    rt("create", "--bundle", str(bundle(["sleep", "100"], limited(cg, LIMITS))), cid, check=True)
    try:
        d = Path(CGROUP + cg)
        got = {name: (d / name).read_text().strip() for name in WANT}
        assert got == WANT
        pid = rt.state(cid)["pid"]
        assert (d / "cgroup.procs").read_text().split() == [str(pid)]
        assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{cg}\n"
        # The parent the runtime created passes every controller the root enables down to it.
        parent = (d.parent / "cgroup.subtree_control").read_text().split()
        assert {"cpu", "cpuset", "memory", "pids"} <= set(parent)
    finally:
        rt("delete", "--force", cid, check=True)
    assert not Path(CGROUP + cg).exists()
    assert not Path(CGROUP + cg).parent.exists()  # the runtime's own parent goes too


def test_limits_seen_from_inside(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    files = [f"{CGROUP}/{name}" for name in WANT]
    r = run_checker(rt, bundle, ["read", *files], limited(cg, LIMITS))
    assert {os.path.basename(k): v.strip() for k, v in r.items()} == WANT


def test_cgroup_mount_is_cgroup2_and_read_only(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    r = run_checker(rt, bundle, ["report"], limited(cg, {"pids": {"limit": 10}}))
    assert r["cgroup"] == f"0::{cg}\n"
    root, opts, fstype = cgroup_mount(r["mountinfo"])
    assert fstype == "cgroup2" and "ro" in opts
    assert root == cg  # without a cgroup namespace: the container's own cgroup, nothing above it
    r = run_checker(rt, bundle, ["access", f"{CGROUP}/pids.max", f"{CGROUP}/cgroup.procs"],
                    limited(cg, {"pids": {"limit": 10}}))
    assert r[f"{CGROUP}/pids.max"] == {"read": 0, "write": EROFS}
    assert r[f"{CGROUP}/cgroup.procs"]["write"] == EROFS


def test_cgroup_namespace_mount(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    mutate = limited(cg, {"pids": {"limit": 11}})

    def with_ns(cfg: dict) -> None:
        mutate(cfg)
        cfg["linux"]["namespaces"].append({"type": "cgroup"})

    r = run_checker(rt, bundle, ["report"], with_ns)
    assert r["cgroup"] == "0::/\n"
    root, opts, fstype = cgroup_mount(r["mountinfo"])
    assert (root, fstype) == ("/", "cgroup2") and "ro" in opts
    r = run_checker(rt, bundle, ["read", f"{CGROUP}/pids.max"], with_ns)
    assert r[f"{CGROUP}/pids.max"].strip() == "11"


def test_default_cgroups_path_is_beside_our_own_cgroup(rt, bundle) -> None:
    cid = new_id()

    def mutate(cfg: dict) -> None:
        cfg["linux"]["resources"] = {"devices": ALLOW_ALL, "pids": {"limit": 12}}

    rt("create", "--bundle", str(bundle(["sleep", "100"], mutate)), cid, check=True)
    try:
        pid = rt.state(cid)["pid"]
        own = Path("/proc/self/cgroup").read_text().strip().removeprefix("0::")
        # runc's fs2 default: a sibling of the runtime's cgroup (its parent holds no processes).
        want = os.path.join(os.path.dirname(own), cid)
        assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{want}\n"
        assert Path(CGROUP + want, "pids.max").read_text() == "12\n"
    finally:
        rt("delete", "--force", cid, check=True)


def test_unified_resources_written_verbatim(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    unified = {"pids.max": "13", "memory.high": str(48 * MiB), "cpu.weight.nice": "5"}
    r = run_checker(rt, bundle, ["read", *(f"{CGROUP}/{k}" for k in unified)],
                    limited(cg, {"unified": unified}))
    assert {os.path.basename(k): v.strip() for k, v in r.items()} == unified


def test_pids_limit_enforced(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    # sh and its subshell are two tasks: with pids.max 3 one sleep fits, the second fork fails and
    # the subshell gives up.  The events are read with builtins only: no fork is left for cat.
    script = ("(for i in 1 2 3 4 5; do sleep 30 & done); "
              "while read -r k v; do echo \"$k $v\"; done < /sys/fs/cgroup/pids.events")
    p = rt("run", "--bundle", str(bundle(["sh", "-c", script], limited(cg, {"pids": {"limit": 3}}))),
           new_id())
    events = dict(line.split() for line in p.stdout.decode().splitlines())
    assert int(events["max"]) >= 1, (p.stdout, p.stderr)
    assert b"can't fork" in p.stderr


def test_memory_limit_oom_kills_inside(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    # sort holds its whole input in memory: 64 MiB of one line cannot fit into 32 MiB.
    script = "head -c 67108864 /dev/zero | sort >/dev/null; echo sort=$?; cat /sys/fs/cgroup/memory.events"
    memory = {"limit": 32 * MiB, "swap": 32 * MiB}
    p = rt("run", "--bundle", str(bundle(["sh", "-c", script], limited(cg, {"memory": memory}))), new_id(),
           timeout=300)
    out = p.stdout.decode()
    assert p.returncode == 0, (out, p.stderr)
    assert "sort=137" in out  # killed by SIGKILL
    events = dict(line.split() for line in out.splitlines() if " " in line and "=" not in line)
    assert int(events["oom_kill"]) >= 1, out


def test_v1_only_setting_refused_without_leftovers(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    cid = new_id()
    b = bundle(["true"], limited(cg, {"memory": {"limit": 64 * MiB, "swappiness": 10}}))
    p = rt("create", "--bundle", str(b), cid)
    assert p.returncode == 1
    assert b"memory.swappiness" in p.stderr and b"not supported" in p.stderr
    assert not Path(CGROUP + cg).exists()
    assert rt("state", cid).returncode == 1


# ---- device rules: an eBPF program on cgroup v2 (ociruntime/cgroups/ebpf.py) ------------------

def test_default_config_denies_unlisted_devices(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"

    def mutate(cfg: dict) -> None:
        cfg["linux"]["cgroupsPath"] = cg  # the default resources: deny all, then runc's list
        cfg["linux"]["devices"] = [DEMO_NODE]

    r = run_checker(rt, bundle, ["access", "/dev/null", "/dev/zero", DEMO_NODE["path"]], mutate)
    assert r["/dev/null"] == {"read": 0, "write": 0}
    assert r["/dev/zero"] == {"read": 0, "write": 0}
    assert r[DEMO_NODE["path"]] == {"read": EPERM, "write": EPERM}


def test_device_allow_rule_grants_only_its_access(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 42, "minor": 0,
                                                 "access": "r"}]

    def mutate(cfg: dict) -> None:
        limited(cg, None, rules)(cfg)
        cfg["linux"]["devices"] = [DEMO_NODE]

    r = run_checker(rt, bundle, ["access", DEMO_NODE["path"]], mutate)
    assert r[DEMO_NODE["path"]] == {"read": ENXIO, "write": EPERM}
