"""finalize_rootfs: masked paths, read-only paths, then the read-only root (after pivot_root).

By now the kernel root *is* the container root, so RESOLVE_IN_ROOT from "/" keeps every lookup
inside it.  The container's /proc may be anything the image put there if the config mounts no
procfs, so nothing here goes through ``/proc/self/fd``: masks and read-only binds are made with
the fd-based mount API (open_tree + move_mount, fsmount, mount_setattr; see open_tree(2),
move_mount(2)).

Masking uses the container's /dev/null opened once, O_NOFOLLOW, and verified to be the 1:3
character device: a planted symlink or fake node cannot turn the "mask" into a bind of some other
file over /proc/timer_list and friends (CVE-2025-31133).
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.linux import mount as m
from ociruntime.rootfs.plan import RootfsPlan
from ociruntime.rootfs.resolve import error_context, open_in_root, oserror

_NULL_RDEV = os.makedev(1, 3)
_ATTACH = m.MOVE_MOUNT_F_EMPTY_PATH | m.MOVE_MOUNT_T_EMPTY_PATH
_CLONE = m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC | m.AT_EMPTY_PATH
# A masked directory is covered by an empty, read-only tmpfs that nothing can be run from.
_MASK_DIR_ATTRS = m.MOUNT_ATTR_RDONLY | m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_NOEXEC


def open_dev_null(rootfd: int) -> int:
    """O_PATH fd of the container's /dev/null, refused unless it is the char device 1:3."""
    fd = open_in_root(rootfd, "dev/null", os.O_PATH | os.O_NOFOLLOW, name="/dev/null")
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != _NULL_RDEV:
        os.close(fd)
        raise oserror(errno.EPERM, "/dev/null is not the null device (char 1:3)", "/dev/null")
    return fd


def _open_existing(rootfd: int, path: str) -> int | None:
    """O_PATH fd of ``path`` inside the root, or None when it does not exist.

    The last component is opened O_NOFOLLOW; if it is a symlink, its target (still resolved
    inside the root) is what gets covered, since masking the link itself would protect nothing.
    """
    rel = path.lstrip("/")
    try:
        fd = open_in_root(rootfd, rel, os.O_PATH | os.O_NOFOLLOW, name=path)
        if not stat.S_ISLNK(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        return open_in_root(rootfd, rel, os.O_PATH, name=path)
    except FileNotFoundError:
        return None


def _attach(tree: int, target: int, path: str) -> None:
    try:
        m.move_mount(tree, "", target, "", _ATTACH, name=path)
    finally:
        os.close(tree)


def _mask_dir(target: int, path: str) -> None:
    fsfd = m.fsopen("tmpfs")
    try:
        m.fsconfig(fsfd, m.FSCONFIG_CMD_CREATE)
        tree = m.fsmount(fsfd, m.FSMOUNT_CLOEXEC, _MASK_DIR_ATTRS)
    finally:
        os.close(fsfd)
    _attach(tree, target, path)


def _mask_file(null_fd: int, target: int, path: str) -> None:
    _attach(m.open_tree(null_fd, "", _CLONE, name="/dev/null"), target, path)


def mask_paths(rootfd: int, paths: tuple[str, ...]) -> None:
    """Cover each existing masked path: files with /dev/null, directories with a ro tmpfs."""
    with error_context("mask paths", "/dev/null"):
        null_fd = open_dev_null(rootfd)
    try:
        for path in paths:
            with error_context(f"mask {path}", path):
                target = _open_existing(rootfd, path)
                if target is None:
                    continue
                try:
                    if stat.S_ISDIR(os.fstat(target).st_mode):
                        _mask_dir(target, path)
                    else:
                        _mask_file(null_fd, target, path)
                finally:
                    os.close(target)
    finally:
        os.close(null_fd)


def readonly_path(rootfd: int, path: str) -> None:
    """Bind ``path`` onto itself (recursively) and make that bind read-only.

    mount_setattr adds MOUNT_ATTR_RDONLY and leaves every other flag alone, so flags locked in a
    user namespace (nosuid, nodev, noexec, atime) are kept, which an MS_REMOUNT has to do by hand.
    Like runc, only the top of the bind becomes read-only, not mounts below it.
    """
    with error_context(f"make {path} read-only", path):
        target = _open_existing(rootfd, path)
        if target is None:
            return
        try:
            tree = m.open_tree(target, "", _CLONE | m.AT_RECURSIVE, name=path)
            try:
                m.mount_setattr(tree, "", m.AT_EMPTY_PATH, attr_set=m.MOUNT_ATTR_RDONLY, name=path)
            except BaseException:
                os.close(tree)
                raise
            _attach(tree, target, path)
        finally:
            os.close(target)


def remount_root_readonly() -> None:
    """``root.readonly``: MS_BIND|MS_REMOUNT|MS_RDONLY on "/", keeping its current flags."""
    with error_context("remount / read-only", "/"):
        flags = m.mount_flags_of("/") & ~m.MS_REMOUNT
        m.mount(None, "/", None, flags | m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY)


def late_readonly(rootfd: int, path: str) -> None:
    """Make the mount at ``path`` read-only, keeping its other flags (runc's remountReadonly).

    mount_setattr on the mount's own fd, not a remount through a path: after pivot_root /proc
    may be anything.  Mounts beneath it stay as they are.
    """
    with error_context(f"remount {path} read-only", path):
        target = _open_existing(rootfd, path)
        if target is None:
            raise oserror(errno.ENOENT, f"{path} is gone", path)
        try:
            m.mount_setattr(target, "", m.AT_EMPTY_PATH, attr_set=m.MOUNT_ATTR_RDONLY, name=path)
        finally:
            os.close(target)


def finalize_rootfs(plan: RootfsPlan) -> None:
    """Late read-only mounts, masked paths, read-only paths, the read-only root, then the
    configured propagation."""
    rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # First, as runc's finalizeRootfs: everything beneath these mounts exists by now
        # (devices, /dev/console, the cwd, nested mount points).
        for spec in plan.mounts:
            if spec.late_ro:
                late_readonly(rootfd, spec.destination)
        if not plan.mntns:
            # "/" and its propagation belong to the host's mount namespace here: runc skips
            # the rest of finalizeRootfs, and masks/read-only paths were refused at create.
            return
        if plan.masked_paths:
            mask_paths(rootfd, plan.masked_paths)
        for path in plan.readonly_paths:
            readonly_path(rootfd, path)
    finally:
        os.close(rootfd)
    if plan.readonly:
        remount_root_readonly()
    if plan.final_propagation:
        # The configured rootfsPropagation goes on the new "/" only after pivot_root (as in
        # runc): before, it would act on the host-copied root.  It comes last because masking
        # clones mounts, which an (r)unbindable tree refuses.
        with error_context("set rootfs propagation", "/"):
            m.mount(None, "/", None, plan.final_propagation)
