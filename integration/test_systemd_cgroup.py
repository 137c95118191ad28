"""The systemd cgroup driver (``--systemd-cgroup``) against a real systemd.

systemd must be PID 1, which it is not on our development machines: ``make test-systemd`` boots
the qemu guest of integration/v2guest/ with /lib/systemd/systemd as PID 1, once with pure cgroup
v2 and once hybrid, and runs this file there; elsewhere it skips.  Every test looks from three
sides: systemd's (``systemctl show`` of the unit), the host's cgroup files, and the container's
own view; and ends with the unit gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import new_id

from ociruntime.cgroups import detect_layout

pytestmark = pytest.mark.root

if not os.path.isdir("/run/systemd/system"):
    pytest.skip("needs systemd as PID 1; run make test-systemd", allow_module_level=True)

LAYOUT = detect_layout()
V2 = LAYOUT.mode == "v2"
CGROUP = Path("/sys/fs/cgroup")
MiB = 1 << 20


def show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, "-p", ",".join(props)], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_gone(unit: str) -> bool:
    return show(unit, "LoadState")["LoadState"] == "not-found"


def ctl_dir(controller: str, cgpath: str) -> Path:
    """The container's directory holding ``controller``'s files on this layout."""
    if V2:
        return CGROUP / cgpath.lstrip("/")
    return CGROUP / controller / cgpath.lstrip("/")


def sd(rt, *args: str, **kw):
    return rt("--systemd-cgroup", *args, **kw)


def _mutate(cgroups_path: str | None = None, resources: dict | None = None):
    def mutate(cfg: dict) -> None:
        if cgroups_path is not None:
            cfg["linux"]["cgroupsPath"] = cgroups_path
        if resources is not None:
            cfg["linux"]["resources"] = resources

    return mutate


def test_scope_with_the_init_delegated_and_limited(rt, bundle) -> None:
    cid = new_id()
    unit = f"runc-{cid}.scope"
    res = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 42},
           "cpu": {"quota": 50_000, "period": 100_000, "shares": 2048, "cpus": "0"}}
    b = bundle(["sleep", "100"], _mutate(None, res))
    sd(rt, "create", "--bundle", str(b), cid, check=True)
    try:
        cg = f"/system.slice/{unit}"
        p = show(unit, "ActiveState", "Slice", "Delegate", "ControlGroup", "TasksMax", "DevicePolicy",
                 "MemoryMax", "MemoryLimit", "CPUQuotaPerSecUSec", "CPUWeight", "CPUShares", "AllowedCPUs")
        assert (p["ActiveState"], p["Slice"], p["Delegate"], p["ControlGroup"]) == (
            "active", "system.slice", "yes", cg)
        assert p["TasksMax"] == "42" and p["DevicePolicy"] == "strict"
        assert p["MemoryMax" if V2 else "MemoryLimit"] == str(64 * MiB)
        assert p["CPUQuotaPerSecUSec"] == "500ms"
        assert p["AllowedCPUs"] == "0"
        if V2:
            assert p["CPUWeight"] == str(1 + ((2048 - 2) * 9999) // 262142)
        else:
            assert p["CPUShares"] == "2048"
        pid = rt.state(cid)["pid"]
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        assert all(line.endswith(cg) for line in lines if line.split(":")[1] in ("", "name=systemd")), lines
        assert (ctl_dir("pids", cg) / "pids.max").read_text().strip() == "42"
        mem = "memory.max" if V2 else "memory.limit_in_bytes"
        assert (ctl_dir("memory", cg) / mem).read_text().strip() == str(64 * MiB)
        if not V2:
            # Hierarchies systemd does not manage hold the scope too, made by the runtime.
            for ctl in ("freezer", "cpuset"):
                procs = (CGROUP / ctl / cg.lstrip("/") / "cgroup.procs").read_text().split()
                assert str(pid) in procs, ctl
        # The container's own view: exec'd processes land in the same scope.
        out = rt("exec", cid, "cat", "/proc/self/cgroup", check=True).stdout.decode()
        assert any(line.endswith(cg) or line.endswith(":/") for line in out.splitlines()), out
    finally:
        rt("delete", "--force", cid, check=True)
    assert unit_gone(unit)
    assert not ctl_dir("pids", f"/system.slice/{unit}").exists()


def test_missing_slice_is_created(rt, bundle) -> None:
    cid = new_id()
    top = f"ocitest{cid[-6:]}".replace("-", "")
    slice_name = f"{top}-sub.slice"
    unit = f"pfx-{cid}.scope"
    assert show(slice_name, "ActiveState")["ActiveState"] == "inactive"
    b = bundle(["sleep", "100"], _mutate(f"{slice_name}:pfx:{cid}", {"pids": {"limit": 10}}))
    try:
        sd(rt, "run", "--detach", "--bundle", str(b), cid, check=True)
        assert show(slice_name, "ActiveState")["ActiveState"] == "active"
        cg = f"/{top}.slice/{slice_name}/{unit}"
        assert show(unit, "ControlGroup")["ControlGroup"] == cg
        assert (ctl_dir("pids", cg) / "pids.max").read_text().strip() == "10"
        rt("delete", "--force", cid, check=True)
        assert unit_gone(unit)
    finally:
        rt("delete", "--force", cid)
        # Slices outlive their scopes in systemd (as with runc): the test removes its own.
        subprocess.run(["systemctl", "stop", f"{top}.slice"], check=False)


def test_update_pause_ps_events_kill_all(rt, bundle) -> None:
    cid = new_id()
    unit = f"runc-{cid}.scope"
    cg = f"/system.slice/{unit}"
    b = bundle(["sh", "-c", "sleep 1000 & exec sleep 1000"], _mutate(None, {"pids": {"limit": 20}}))
    sd(rt, "run", "--detach", "--bundle", str(b), cid, check=True)
    try:
        sd(rt, "update", "--memory", str(96 * MiB), "--pids-limit", "50", cid, check=True)
        p = show(unit, "TasksMax", "MemoryMax", "MemoryLimit")
        assert p["TasksMax"] == "50" and p["MemoryMax" if V2 else "MemoryLimit"] == str(96 * MiB)
        assert (ctl_dir("pids", cg) / "pids.max").read_text().strip() == "50"
        sd(rt, "pause", cid, check=True)
        assert rt.state(cid)["status"] == "paused"
        if V2:
            assert "frozen 1" in (ctl_dir("", cg) / "cgroup.events").read_text().splitlines()
        else:
            assert (CGROUP / "freezer" / cg.lstrip("/") / "freezer.state").read_text().strip() == "FROZEN"
        sd(rt, "resume", cid, check=True)
        assert rt.state(cid)["status"] == "running"
        pids = json.loads(sd(rt, "ps", "--format", "json", cid, check=True).stdout)
        assert len(pids) == 2
        stats = json.loads(sd(rt, "events", "--stats", cid, check=True).stdout)
        assert stats["type"] == "stats" and stats["data"]["pids"]["current"] == 2
        sd(rt, "kill", "--all", cid, "KILL", check=True)
        deadline = time.monotonic() + 10
        while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rt.state(cid)["status"] == "stopped"
        assert all(not Path(f"/proc/{p}").exists() for p in pids)
        sd(rt, "delete", cid, check=True)
        assert unit_gone(unit)
    finally:
        rt("delete", "--force", cid)


def test_bad_path_and_taken_unit_fail_in_one_line_leaving_nothing(rt, bundle, tmp_path) -> None:
    cid = new_id()
    p = sd(rt, "create", "--bundle", str(bundle(["true"], _mutate("/not/systemd/form"))), cid)
    assert p.returncode == 1
    assert p.stderr.decode().count("\n") == 1 and b"slice:prefix:name" in p.stderr
    assert not (rt.root / cid).exists()
    # A unit of the name already running (not ours): refused by systemd, and left alone.
    taken = f"taken{cid[-6:]}".replace("-", "")
    holder = subprocess.Popen(["systemd-run", "--scope", f"--unit=pfx-{taken}.scope", "sleep", "60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while show(f"pfx-{taken}.scope", "ActiveState")["ActiveState"] != "active":
            assert time.monotonic() < deadline, "systemd-run --scope did not start"
            time.sleep(0.05)
        p = sd(rt, "create", "--bundle", str(bundle(["true"], _mutate(f"system.slice:pfx:{taken}"))), cid)
        assert p.returncode == 1
        err = p.stderr.decode()
        assert err.count("\n") == 1 and "UnitExists" in err, err
        assert not (rt.root / cid).exists()
        assert show(f"pfx-{taken}.scope", "ActiveState")["ActiveState"] == "active"
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["systemctl", "stop", f"pfx-{taken}.scope"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
