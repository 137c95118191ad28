"""Helpers shared by the real-engine tests (test_podman.py, test_containerd.py)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path

from conftest import runtime_cmd

CGROUP_ROOT = Path("/sys/fs/cgroup")


def launcher(tmp: Path) -> str:
    """A single executable for the runtime under test, named ``ociruntime`` (clients take a path)."""
    cmd = runtime_cmd()
    if len(cmd) == 1:
        return cmd[0]
    path = tmp / "bin" / "ociruntime"
    path.parent.mkdir()
    path.write_text(f'#!/bin/sh\nexec {shlex.join(cmd)} "$@"\n')
    path.chmod(0o755)
    return str(path)


def mounts_under(top: Path) -> list[str]:
    """Mount points at or below ``top``, deepest first (the order to unmount them in)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted({p for p in points if p == str(top) or p.startswith(f"{top}/")}, key=len, reverse=True)


def host_cgroup(pid: int, controller: str) -> Path:
    """The host directory of ``pid``'s cgroup in a v1 ``controller`` hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def proc_field(pid: int | str, name: str) -> str:
    """The first value of a ``/proc/<pid>/status`` line (``State``, ``CapBnd``, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split()[1]
    raise AssertionError(f"no {name} line")


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
