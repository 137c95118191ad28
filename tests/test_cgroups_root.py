"""Root tests for the cgroup manager against this host's real hierarchies.

Only a forked child is ever moved into the test cgroup; the test runner stays where it is.
Every directory created is removed in the test and again, defensively, in the fixture.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociruntime.cgroups import Manager, detect_layout, files, new_manager
from ociruntime.cgroups.layout import parse_proc_cgroup

pytestmark = pytest.mark.root

LAYOUT = detect_layout()
if os.geteuid() != 0 or LAYOUT.mode == "none":
    pytest.skip("needs root and a mounted cgroup filesystem", allow_module_level=True)


def _mounts() -> list[str]:
    out = [m.mountpoint for m in LAYOUT.v1.values()]
    if LAYOUT.unified is not None:
        out.append(LAYOUT.unified.mountpoint)
    return sorted(set(out))


def _leftovers(top: str) -> list[str]:
    return [os.path.join(m, top) for m in _mounts() if os.path.exists(os.path.join(m, top))]


def _remove_tree(path: str) -> None:
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))
    os.rmdir(path)


class Child:
    """A forked child that blocks until its pipe closes, then exits."""

    def __init__(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            try:
                os.read(r, 1)
            finally:
                os._exit(0)
        os.close(r)
        self.pid, self._w, self.reaped = pid, w, False

    def kill(self) -> None:
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.close(self._w)
            os.waitpid(self.pid, 0)
            self.reaped = True


@pytest.fixture
def top() -> Iterator[str]:
    name = f"ociruntime-test-{os.getpid()}"
    yield name
    for path in _leftovers(name):
        _remove_tree(path)


@pytest.fixture
def mgr(top: str) -> Iterator[Manager]:
    m = new_manager(f"/{top}/c1", "c1")
    yield m
    m.destroy()


def test_lifecycle_on_host(top: str, mgr: Manager) -> None:
    assert _leftovers(top) == []
    mgr.create()
    assert mgr.exists()
    child = Child()
    try:
        mgr.join(child.pid)
        membership = parse_proc_cgroup(Path(f"/proc/{child.pid}/cgroup").read_text())
        for name in mgr.paths:
            assert membership[name] == f"/{top}/c1", name

        mgr.set_resources(
            {
                "devices": [{"allow": False, "access": "rwm"}],
                "pids": {"limit": 7},
                "memory": {"limit": 67108864},
            }
        )
        if LAYOUT.mode == "v2":
            d = mgr.paths["unified"]
            assert files.read(d, "pids.max") == "7"
            assert files.read(d, "memory.max") == "67108864"
        else:
            assert files.read(mgr.paths["pids"], "pids.max") == "7"
            assert files.read(mgr.paths["memory"], "memory.limit_in_bytes") == "67108864"
            rules = files.read(mgr.paths["devices"], "devices.list").splitlines()
            assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules
        if "cpuset" in mgr.paths:
            assert files.read(mgr.paths["cpuset"], "cpuset.cpus") != ""

        assert mgr.pids() == [child.pid]
        assert not mgr.is_frozen()
        mgr.freeze()
        assert mgr.is_frozen()
        mgr.thaw()
        assert not mgr.is_frozen()
    finally:
        child.kill()
    assert mgr.pids() == []
    mgr.destroy()
    assert not mgr.exists()
    assert _leftovers(top) == []
    mgr.destroy()  # idempotent


def test_destroy_thaws_frozen_cgroup_with_dying_task(top: str, mgr: Manager) -> None:
    mgr.create()
    child = Child()
    try:
        mgr.join(child.pid)
        mgr.freeze()
        # SIGKILL is held while frozen: destroy must thaw first, then wait for the exit (EBUSY).
        os.kill(child.pid, signal.SIGKILL)
        mgr.destroy()
        assert _leftovers(top) == []
    finally:
        child.kill()


def test_nested_subcgroup_pids_and_destroy(top: str, mgr: Manager) -> None:
    mgr.create()
    child = Child()
    # The hierarchy pids() reads: unified wherever it exists, else the pids controller.
    sub = os.path.join(mgr.paths["unified" if "unified" in mgr.paths else "pids"], "inner")
    try:
        mgr.join(child.pid)
        os.mkdir(sub)
        files.write(sub, "cgroup.procs", str(child.pid))
        assert not os.path.exists(os.path.join(os.path.dirname(sub), "cgroup.procs")) or str(
            child.pid
        ) not in (files.read(os.path.dirname(sub), "cgroup.procs").split())
        assert mgr.pids() == [child.pid]
    finally:
        child.kill()
    mgr.destroy()
    assert _leftovers(top) == []
