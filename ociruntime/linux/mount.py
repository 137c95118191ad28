"""Mount-related system calls: mount(2), umount2(2), pivot_root(2) and the fd-based mount API.

Thin wrappers over the ``LIBC`` handle (loaded before fork): each raises
``OSError(errno, "call: strerror", path)`` naming the call and its target and never retries.
The new mount API (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount; Linux 5.2+,
mount_setattr 5.12+) is what lets the rootfs code act on file descriptors instead of path
strings, see mount_setattr(2), open_tree(2), move_mount(2), fsopen(2).
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.linux.libc import (
    LIBC,
    SYS_MOUNT_SETATTR,
    SYS_MOVE_MOUNT,
    SYS_OPEN_TREE,
    SYS_PIVOT_ROOT,
    check,
    fsencode,
    syscall,
)

# mount(2) flags, <linux/mount.h>.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MS_PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE
# Flags the kernel locks on a mount that was copied into a less privileged user namespace
# (fs/namespace.c: MNT_LOCK_*): a remount must keep them or fail with EPERM.
MS_LOCKABLE = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
MS_ATIME_MASK = MS_NOATIME | MS_RELATIME | MS_STRICTATIME

# umount2(2) flags.
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

# mount_setattr(2) / fsmount(2) attributes.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# *at flags used by the mount API.
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC

MOVE_MOUNT_F_SYMLINKS = 0x1
MOVE_MOUNT_F_AUTOMOUNTS = 0x2
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_SYMLINKS = 0x10
MOVE_MOUNT_T_AUTOMOUNTS = 0x20
MOVE_MOUNT_T_EMPTY_PATH = 0x40

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6

SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

# statvfs(3) f_flag bits (ST_*), which differ from MS_* for the atime flags.
ST_RDONLY = 0x1
ST_NOSUID = 0x2
ST_NODEV = 0x4
ST_NOEXEC = 0x8
ST_SYNCHRONOUS = 0x10
ST_MANDLOCK = 0x40
ST_NOATIME = 0x400
ST_NODIRATIME = 0x800
ST_RELATIME = 0x1000
ST_NOSYMFOLLOW = 0x2000

_ST_TO_MS = (
    (ST_RDONLY, MS_RDONLY),
    (ST_NOSUID, MS_NOSUID),
    (ST_NODEV, MS_NODEV),
    (ST_NOEXEC, MS_NOEXEC),
    (ST_SYNCHRONOUS, MS_SYNCHRONOUS),
    (ST_MANDLOCK, MS_MANDLOCK),
    (ST_NOATIME, MS_NOATIME),
    (ST_NODIRATIME, MS_NODIRATIME),
    (ST_RELATIME, MS_RELATIME),
    (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW),
)

_mount = LIBC["mount"]
_mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_mount.restype = ctypes.c_int
_fstatfs = LIBC["fstatfs"]
_fstatfs.argtypes = (ctypes.c_int, ctypes.c_void_p)
_fstatfs.restype = ctypes.c_int
# struct statfs is 120 bytes on x86_64 and starts with ``long f_type``; a larger buffer is harmless.
_STATFS_SIZE = 256
_umount2 = LIBC["umount2"]
_umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_umount2.restype = ctypes.c_int


class MountAttr(ctypes.Structure):
    """``struct mount_attr`` of mount_setattr(2) (MOUNT_ATTR_SIZE_VER0, 32 bytes)."""

    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _opt(value: str | None) -> bytes | None:
    return None if value is None else fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); ``target`` is usually ``/proc/self/fd/N`` of a verified, already opened target."""
    ret = _mount(_opt(source), fsencode(target), _opt(fstype), ctypes.c_ulong(flags), _opt(data or None))
    check(ret, "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    check(_umount2(fsencode(target), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (no glibc wrapper)."""
    ret = syscall(SYS_PIVOT_ROOT, ctypes.c_char_p(fsencode(new_root)), ctypes.c_char_p(fsencode(put_old)))
    check(ret, "pivot_root", new_root)


def mount_setattr(
    dirfd: int,
    path: str,
    flags: int,
    attr_set: int = 0,
    attr_clr: int = 0,
    propagation: int = 0,
    userns_fd: int = 0,
    *,
    name: str | None = None,
) -> None:
    """mount_setattr(2) on ``dirfd``/``path`` (``path`` "" with AT_EMPTY_PATH acts on the fd)."""
    attr = MountAttr(attr_set, attr_clr, propagation, userns_fd)
    ret = syscall(
        SYS_MOUNT_SETATTR,
        ctypes.c_int(dirfd),
        ctypes.c_char_p(fsencode(path)),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    check(ret, "mount_setattr", name if name is not None else path)


def open_tree(dirfd: int, path: str, flags: int, *, name: str | None = None) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount (tree) at ``dirfd``/``path``."""
    ret = syscall(SYS_OPEN_TREE, ctypes.c_int(dirfd), ctypes.c_char_p(fsencode(path)), ctypes.c_uint(flags))
    return check(ret, "open_tree", name if name is not None else path)


def move_mount(
    from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int, *, name: str | None = None
) -> None:
    """move_mount(2): attach (or move) the mount at ``from`` onto ``to``."""
    ret = syscall(
        SYS_MOVE_MOUNT,
        ctypes.c_int(from_dirfd),
        ctypes.c_char_p(fsencode(from_path)),
        ctypes.c_int(to_dirfd),
        ctypes.c_char_p(fsencode(to_path)),
        ctypes.c_uint(flags),
    )
    check(ret, "move_mount", name if name is not None else to_path)


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    """fsopen(2): a filesystem context for a new superblock of ``fstype``."""
    ret = syscall(SYS_FSOPEN, ctypes.c_char_p(fsencode(fstype)), ctypes.c_uint(flags))
    return check(ret, "fsopen", fstype)


def fsconfig(fsfd: int, cmd: int, key: str | None = None, value: str | None = None, aux: int = 0) -> None:
    """fsconfig(2): set one parameter (or FSCONFIG_CMD_CREATE) on a filesystem context."""
    ret = syscall(
        SYS_FSCONFIG,
        ctypes.c_int(fsfd),
        ctypes.c_uint(cmd),
        ctypes.c_char_p(_opt(key)),
        ctypes.c_char_p(_opt(value)),
        ctypes.c_int(aux),
    )
    check(ret, "fsconfig", key)


def fsmount(fsfd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """fsmount(2): a detached mount fd for the superblock created in ``fsfd``."""
    ret = syscall(SYS_FSMOUNT, ctypes.c_int(fsfd), ctypes.c_uint(flags), ctypes.c_uint(attr_flags))
    return check(ret, "fsmount")


def statvfs_to_ms(f_flag: int) -> int:
    """Translate statvfs ``f_flag`` (ST_*) bits into the equivalent MS_* mount flags."""
    out = 0
    for st_bit, ms_bit in _ST_TO_MS:
        if f_flag & st_bit:
            out |= ms_bit
    return out


def mount_flags_of(path_or_fd: str | int) -> int:
    """The MS_* per-mount flags of the mount holding ``path_or_fd`` (fstatvfs works on O_PATH fds)."""
    return statvfs_to_ms(os.statvfs(path_or_fd).f_flag)


def fstatfs_type(fd: int) -> int:
    """fstatfs(2) ``f_type`` (the filesystem magic, e.g. PROC_SUPER_MAGIC) of ``fd``."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    check(_fstatfs(ctypes.c_int(fd), buf), "fstatfs", f"fd {fd}")
    return ctypes.c_long.from_buffer(buf).value
