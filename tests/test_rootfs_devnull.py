"""rootfs/devices.py reopen_dev_null: stdio on the host's /dev/null moves to the container's.

Each case runs in a forked child with a private mount namespace whose /dev is a fresh tmpfs (the
"container's" /dev); the host's /dev/null stays reachable through an fd opened before.
"""

from __future__ import annotations

import os
import stat

import pytest
from forked import run_in_child

from ociruntime.linux import mount as m
from ociruntime.rootfs.devices import reopen_dev_null

pytestmark = pytest.mark.root


def _mnt_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("mnt_id:"))


def _fresh_dev(null_node: bool) -> int:
    """A tmpfs on /dev holding a null device (or a plain file named null); its mount id."""
    m.mount("tmpfs", "/dev", "tmpfs", m.MS_NOSUID, "size=64k,mode=755")
    if null_node:
        os.mknod("/dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        open("/dev/null", "w").close()
    fd = os.open("/dev", os.O_PATH)
    try:
        return _mnt_id(fd)
    finally:
        os.close(fd)


def test_host_dev_null_stdio_is_replaced_and_other_stdio_kept() -> None:
    def child() -> list:
        host_null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(host_null, 0)
        _, w = os.pipe()
        os.dup2(w, 1)
        host_mnt = _mnt_id(0)
        pipe_ino = os.fstat(1).st_ino
        dev_mnt = _fresh_dev(null_node=True)
        reopen_dev_null()
        flags = int(open("/proc/self/fdinfo/0").read().split("flags:")[1].split()[0], 8)
        return [host_mnt, dev_mnt, _mnt_id(0), os.fstat(1).st_ino == pipe_ino, flags & os.O_ACCMODE,
                flags & os.O_CLOEXEC]

    host_mnt, dev_mnt, now, pipe_kept, mode, cloexec = run_in_child(child)
    assert now == dev_mnt != host_mnt
    assert pipe_kept
    # Read-write, like runc's, and inherited by the container process (no close-on-exec).
    assert (mode, cloexec) == (os.O_RDWR, 0)


@pytest.mark.parametrize("swap", ["file", "symlink"])
def test_a_swapped_dev_null_is_not_used(swap: str) -> None:
    """crun CVE-2026-88265: a /dev/null that is no null device, or a symlink to one, is never
    opened onto stdio; the caller's fds stay."""
    def child() -> list:
        host_null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(host_null, 0)
        host_mnt = _mnt_id(0)
        _fresh_dev(null_node=False)
        if swap == "symlink":
            os.mknod("/dev/real-null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            os.unlink("/dev/null")
            os.symlink("/dev/real-null", "/dev/null")
        reopen_dev_null()
        return [host_mnt, _mnt_id(0)]

    before, after = run_in_child(child)
    assert before == after
