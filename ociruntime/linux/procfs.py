"""A private procfs handle for runtime-side /proc writes (sysctls, oom_score_adj).

Writing through a path such as ``<rootfs>/proc/sys/...`` lets the image (or a racing second
container) redirect the write with a bind-mounted decoy or a symlink (CVE-2025-52881).  Instead
the init opens a *fresh, detached* procfs instance (fsopen/fsmount: it is attached nowhere, so
nothing can be mounted over it), verifies it is procfs, and does every write relative to it with
openat2 forbidding symlinks, magic links and mount crossings.
"""

from __future__ import annotations

import errno
import os

from ociruntime.linux.mount import (
    AT_FDCWD,
    FSCONFIG_CMD_CREATE,
    FSMOUNT_CLOEXEC,
    FSOPEN_CLOEXEC,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    fsconfig,
    fsmount,
    fsopen,
    fstatfs_type,
    open_tree,
)
from ociruntime.linux.openat2 import (
    RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    openat2,
)

PROC_SUPER_MAGIC = 0x9FA0
# The root directory of every procfs instance has inode number 1 (fs/proc/root.c PROC_ROOT_INO).
PROC_ROOT_INO = 1

_WRITE_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS
# fsopen/fsmount fail with these where the new mount API or a fresh proc mount is not allowed
# (old kernel, seccomp filter of an outer runtime, a user namespace without a visible procfs).
_FALLBACK_ERRNOS = (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL)
_EXDEV = os.strerror(errno.EXDEV)


def _fresh_procfs() -> int:
    """fsopen("proc") → FSCONFIG_CMD_CREATE → fsmount: a new, detached proc of our pid namespace."""
    fsfd = fsopen("proc", FSOPEN_CLOEXEC)
    try:
        fsconfig(fsfd, FSCONFIG_CMD_CREATE)
        return fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)
    finally:
        os.close(fsfd)


def _cloned_procfs() -> int:
    """A detached, non-recursive clone of the mount at /proc: whatever is mounted *under* it
    (decoys included) is left behind, and whatever is mounted *over* it fails the checks below."""
    return open_tree(AT_FDCWD, "/proc", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, name="/proc")


def _verify_procfs(fd: int) -> None:
    st_type = fstatfs_type(fd)
    if st_type != PROC_SUPER_MAGIC:
        raise OSError(errno.EXDEV, f"open procfs: not procfs (f_type {st_type:#x}): {_EXDEV}", "/proc")
    if os.fstat(fd).st_ino != PROC_ROOT_INO:
        raise OSError(errno.EXDEV, f"open procfs: not the root of a procfs instance: {_EXDEV}", "/proc")


def open_procfs() -> int:
    """Return an O_CLOEXEC fd on the root of a fresh, detached procfs verified by fstatfs."""
    try:
        fd = _fresh_procfs()
    except OSError as e:
        if e.errno not in _FALLBACK_ERRNOS:
            raise
        fd = _cloned_procfs()
    try:
        _verify_procfs(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _resolve_self(procfd: int, relpath: str) -> str:
    """Replace a leading ``self``/``thread-self`` (procfs symlinks, refused by RESOLVE_NO_SYMLINKS)
    with the pid they name *in that procfs instance*, read from the instance itself."""
    head, sep, rest = relpath.partition("/")
    if head in ("self", "thread-self"):
        target = os.readlink(head, dir_fd=procfd)
        return f"{target}{sep}{rest}"
    return relpath


def write_proc(procfd: int, relpath: str, value: str) -> None:
    """Write ``value`` to ``/proc/<relpath>`` through ``procfd`` in one write(2)."""
    name = f"/proc/{relpath}"
    path = _resolve_self(procfd, relpath.lstrip("/"))
    fd = openat2(procfd, path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY, _WRITE_RESOLVE, name=name)
    try:
        data = value.encode()
        try:
            written = os.write(fd, data)
        except OSError as e:
            raise OSError(e.errno, f"write: {os.strerror(e.errno or 0)}", name) from None
        if written != len(data):
            raise OSError(errno.EIO, f"write: short write ({written} of {len(data)} bytes)", name)
    finally:
        os.close(fd)
