"""pivot: make the prepared rootfs the process's root and get rid of the old root.

pivot_root(2) with runc's "pivot_root(".", ".")" trick (no put_old directory in the image is
needed), or, for ``--no-pivot`` (e.g. a rootfs on a ramfs, where pivot_root is refused), runc's
``msMoveRoot``: MS_MOVE the rootfs onto "/" and chroot into it.
"""

from __future__ import annotations

import errno
import os

from ociruntime.linux import mount as m
from ociruntime.linux.mountinfo import parse_mountinfo
from ociruntime.rootfs.plan import RootfsPlan
from ociruntime.rootfs.resolve import error_context


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def pivot_root(rootfs: str) -> None:
    """runc's pivotRoot: pivot_root(".", "."), then detach the old root stacked underneath."""
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        newroot = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            # pivot_root acts on cwd: both new_root and put_old are ".", which stacks the old
            # root on top of the new one at "/" (pivot_root(2) NOTES).
            os.fchdir(newroot)
            m.pivot_root(".", ".")
        finally:
            os.close(newroot)
        # The kernel does not promise where cwd is after pivot_root: go to the old root explicitly.
        os.fchdir(oldroot)
    finally:
        os.close(oldroot)
    # rslave before unmounting so the unmount cannot propagate back to the host (runc uses
    # slave, not private, to avoid races with host tools still holding references).
    m.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)
    # MNT_DETACH: the old root is busy (it is our cwd) until we leave it.
    m.umount2(".", m.MNT_DETACH)
    os.chdir("/")


def _hide_host_proc_sys(rootfs: str) -> None:
    """Before chroot, unmount (or cover) every host proc/sysfs mount outside the rootfs.

    With chroot the host's full procfs/sysfs stay in our mount namespace; the kernel's
    "fully visible" check for mounting a new proc/sysfs (mount_too_revealing) looks at the
    namespace, not our root, so they must go (runc's msMoveRoot).
    """
    with open("/proc/self/mountinfo", "rb") as f:
        entries = parse_mountinfo(f.read())
    for entry in entries:
        if entry.fstype not in ("proc", "sysfs") or _under(entry.mount_point, rootfs):
            continue
        try:
            m.mount(None, entry.mount_point, None, m.MS_SLAVE | m.MS_REC)
        except FileNotFoundError:
            continue  # a parent was already detached
        try:
            m.umount2(entry.mount_point, m.MNT_DETACH)
        except OSError as e:
            # EPERM/EINVAL: the mount is locked in a user namespace; cover it instead.
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
            m.mount("tmpfs", entry.mount_point, "tmpfs", 0)


def move_root(rootfs: str) -> None:
    """runc's msMoveRoot: MS_MOVE the rootfs onto "/" and chroot into it."""
    _hide_host_proc_sys(rootfs)
    os.chdir(rootfs)
    m.mount(rootfs, "/", None, m.MS_MOVE)
    # cwd is the moved mount; chroot(".") makes it our root.
    os.chroot(".")
    os.chdir("/")


def chroot_root(rootfs: str) -> None:
    """runc's chroot(): the root of a container that shares the runtime's mount namespace."""
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(fd)
    finally:
        os.close(fd)
    os.chroot(".")
    os.chdir("/")


def pivot(plan: RootfsPlan) -> None:
    """Switch the root to ``plan.rootfs``; afterwards cwd is "/" and the host root is unreachable.

    Without a private mount namespace both pivot_root and --no-pivot's MS_MOVE would rearrange
    the host's own mount tree, so chroot is the only way in (runc does the same, --no-pivot or not).
    """
    if not plan.mntns:
        with error_context("chroot to " + plan.rootfs, plan.rootfs):
            chroot_root(plan.rootfs)
    elif plan.no_pivot:
        with error_context("move root to " + plan.rootfs, plan.rootfs):
            move_root(plan.rootfs)
    else:
        with error_context("pivot_root to " + plan.rootfs, plan.rootfs):
            pivot_root(plan.rootfs)

