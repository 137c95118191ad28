"""A cgroupsPath naming a cgroup that already exists: frozen (refused) or holding processes (warned)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import new_id

pytestmark = pytest.mark.root

CGROUP = Path("/sys/fs/cgroup")


def _dirs_named(name: str) -> list[Path]:
    return [h / name for h in CGROUP.iterdir() if (h / name).is_dir()]


def _remove(d: Path) -> None:
    with contextlib.suppress(OSError):
        if (d / "freezer.state").exists():
            (d / "freezer.state").write_text("THAWED")
        if (d / "cgroup.freeze").exists():
            (d / "cgroup.freeze").write_text("0")
        d.rmdir()


def _path(name: str):
    def mutate(cfg: dict) -> None:
        cfg["linux"]["cgroupsPath"] = f"/{name}"
    return mutate


@pytest.mark.parametrize(("hierarchy", "control", "value"), [
    ("freezer", "freezer.state", "FROZEN"),
    ("unified", "cgroup.freeze", "1"),  # the cgroup2 freezer works on hybrid too
])
def test_frozen_existing_cgroup_refused(rt, bundle, hierarchy: str, control: str, value: str) -> None:
    name = f"ociruntime-frozen-{new_id()}"
    frozen = CGROUP / hierarchy / name
    frozen.mkdir()
    try:
        (frozen / control).write_text(value)
        b = bundle(["true"], _path(name))
        # `run -d` used to wait forever for an init that could never run
        for cmd in (["create"], ["run", "-d"]):
            p = rt(*cmd, "--bundle", str(b), new_id(), timeout=30)
            err = p.stderr.decode()
            assert p.returncode == 1 and err == "container's cgroup unexpectedly frozen\n", (cmd, err)
            # refused before anything was made, and the cgroup that was there is left alone
            assert _dirs_named(name) == [frozen]
            assert (frozen / control).read_text().strip() == value
            assert [d for d in os.listdir(rt.root) if not d.startswith(".")] == []
    finally:
        _remove(frozen)


def test_non_empty_existing_cgroup_warns_and_runs(rt, bundle) -> None:
    name = f"ociruntime-busy-{new_id()}"
    busy = CGROUP / "unified" / name
    busy.mkdir()
    outsider = subprocess.Popen(["sleep", "100"])
    cid = new_id()
    try:
        (busy / "cgroup.procs").write_text(str(outsider.pid))
        b = bundle(["sleep", "100"], _path(name))
        p = rt("run", "-d", "--bundle", str(b), cid)
        assert p.returncode == 0, p.stderr.decode()
        log = [json.loads(line) for line in rt.log.read_text().splitlines()]
        assert {"level": "warning", "msg": "container's cgroup is not empty: 1 process(es) found"} in [
            {k: e[k] for k in ("level", "msg")} for e in log]
        assert rt.state(cid)["status"] == "running"
    finally:
        # the outsider is not the container's: gone before delete empties and removes the cgroup
        outsider.kill()
        outsider.wait()
        rt("delete", "--force", cid)
        for d in _dirs_named(name):
            deadline = time.monotonic() + 5
            while d.is_dir() and time.monotonic() < deadline:
                _remove(d)
                time.sleep(0.05)


# ---- linux.resources.unified on a v1 or hybrid host -------------------------------------------

def _host_mode() -> str:
    from ociruntime.cgroups import detect_layout

    return detect_layout().under(str(CGROUP)).mode


@pytest.mark.skipif(_host_mode() not in ("v1", "hybrid"), reason="runc allows unified on pure v2")
def test_unified_refused_on_v1_and_hybrid(rt, bundle) -> None:
    from test_bad_input import assert_clean_failure

    def mutate(cfg: dict) -> None:
        cfg["linux"]["resources"]["unified"] = {"pids.max": "10"}

    p = rt("create", "--bundle", str(bundle(["true"], mutate)), new_id())
    # runc's text on hybrid too: the unified hierarchy there has no controllers
    assert_clean_failure(p, rt, "invalid configuration: cannot use unified on cgroup v1")
