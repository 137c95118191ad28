"""The container's /dev: device nodes, the ptmx and /proc/self/fd symlinks, /dev/console.

Runs in the init before pivot_root (runc's createDevices, setupPtmx, setupDevSymlinks), except
:func:`reopen_dev_null`, which needs the container's own /dev as "/dev".  Every
node and link is created relative to a directory fd resolved with RESOLVE_IN_ROOT, never through
a joined path string: with ``rootfs/dev -> /tmp/HOSTDEV`` the nodes land in
``rootfs/tmp/HOSTDEV``, inside the image, and nothing is created on the host.
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.linux import mount as m
from ociruntime.rootfs.plan import DeviceSpec, RootfsPlan
from ociruntime.rootfs.resolve import error_context, mkdir_all, oserror, secure_join, split_parent

_KIND_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}

# runc's setupDevSymlinks; /dev/core only when the host has /proc/kcore.
_DEV_SYMLINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
)


def _parent_fd(rootfd: int, root_path: str | None, path: str) -> tuple[int, str]:
    """(O_PATH fd of the in-root parent directory of ``path``, base name), parents created."""
    rel = secure_join(rootfd, path, name=path)
    parent, base = split_parent(rel)
    return mkdir_all(rootfd, parent, root_path=root_path, name=path), base


def _open_node(parent: int, base: str) -> int:
    return os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def _is_node(st: os.stat_result, dev: DeviceSpec) -> bool:
    if stat.S_IFMT(st.st_mode) != _KIND_BITS[dev.kind]:
        return False
    return dev.kind == "p" or st.st_rdev == os.makedev(dev.major, dev.minor)


def _mknod(parent: int, base: str, dev: DeviceSpec) -> None:
    """Create the node with exactly ``dev.mode`` and ``dev.uid:dev.gid``."""
    # umask 0 so mknod gives the requested bits; the chmod below covers filesystems with default
    # ACLs, where the umask is not what trims the mode.
    old = os.umask(0)
    try:
        os.mknod(base, _KIND_BITS[dev.kind] | dev.mode, os.makedev(dev.major, dev.minor), dir_fd=parent)
    except FileExistsError:
        # runc keeps an existing node (an image or a bind of the host's /dev may provide it).
        return
    finally:
        os.umask(old)
    fd = _open_node(parent, base)
    try:
        # Verify what we change is the node we just made, then change it through the fd.
        if not _is_node(os.fstat(fd), dev):
            raise oserror(errno.EEXIST, f"{dev.path} was replaced while being created", dev.path)
        os.chown(f"/proc/self/fd/{fd}", dev.uid, dev.gid)
        os.chmod(f"/proc/self/fd/{fd}", dev.mode)
    finally:
        os.close(fd)


def _bind_host_node(parent: int, base: str, dev: DeviceSpec) -> None:
    """In a user namespace mknod(2) is refused: bind the host's node onto an empty file
    (runc's bindMountDeviceNode)."""
    try:
        os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o000,
                         dir_fd=parent))
    except FileExistsError:
        pass
    fd = _open_node(parent, base)
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            raise oserror(errno.EEXIST, f"{dev.path} exists and is not a file", dev.path)
        m.mount(dev.path, f"/proc/self/fd/{fd}", None, m.MS_BIND)
    finally:
        os.close(fd)


def create_device(rootfd: int, root_path: str | None, dev: DeviceSpec, userns: bool) -> None:
    """Create one configured or default device node inside the rootfs."""
    parent, base = _parent_fd(rootfd, root_path, dev.path)
    try:
        # mkfifo is allowed in a user namespace; only real device nodes need the bind.
        if userns and dev.kind != "p":
            _bind_host_node(parent, base, dev)
        else:
            _mknod(parent, base, dev)
    finally:
        os.close(parent)


def _setup_ptmx(devfd: int) -> None:
    """/dev/ptmx -> pts/ptmx, so the container uses its own devpts instance (runc setupPtmx)."""
    try:
        os.unlink("ptmx", dir_fd=devfd)
    except FileNotFoundError:
        pass
    os.symlink("pts/ptmx", "ptmx", dir_fd=devfd)


def _setup_symlinks(devfd: int) -> None:
    links = list(_DEV_SYMLINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "core"))
    for target, name in links:
        try:
            os.symlink(target, name, dir_fd=devfd)
        except FileExistsError:
            pass


def open_dev(rootfd: int, root_path: str | None) -> int:
    """O_PATH fd of the container's /dev, resolved (and created) inside the rootfs."""
    rel = secure_join(rootfd, "/dev", name="/dev")
    return mkdir_all(rootfd, rel, root_path=root_path, name="/dev")


def setup_dev(rootfd: int, root_path: str | None, plan: RootfsPlan) -> None:
    """Default and configured devices, then the ptmx and fd symlinks."""
    for dev in plan.devices:
        with error_context(f"create device {dev.path}", dev.path):
            create_device(rootfd, root_path, dev, plan.userns)
    with error_context("create /dev symlinks", "/dev"):
        devfd = open_dev(rootfd, root_path)
        try:
            _setup_ptmx(devfd)
            _setup_symlinks(devfd)
        finally:
            os.close(devfd)


def setup_console_file(rootfd: int, root_path: str | None, *, replace: bool) -> None:
    """An empty regular file at /dev/console for the console bind (runc's mountConsole).

    An existing regular file or character device is kept.  Anything else (a symlink planted by
    the image) is removed first when /dev is ours (``replace``), else refused.
    """
    devfd = open_dev(rootfd, root_path)
    try:
        try:
            st = os.stat("console", dir_fd=devfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            return
        if st is not None:
            if not replace:
                raise oserror(errno.EEXIST, "/dev/console exists and is not a file", "/dev/console")
            os.unlink("console", dir_fd=devfd)
        os.close(os.open("console", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=devfd))
    finally:
        os.close(devfd)


def _is_dev_null(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def reopen_dev_null() -> None:
    """Point stdio that is the *host's* /dev/null at the container's /dev/null (runc's reOpenDevNull).

    Engines hand a container the host's /dev/null as stdio (conmon for a detached container's
    stdin, containerd's shim read-only for a CRI container's).  An fd on a mount outside the
    container is something CRIU cannot dump, and a read-only one is not what runc gives: the
    container's own node, opened read-write, is.  After pivot_root, so the path resolves in the
    container, and only when we populated its /dev.  The node must be a real 1:3 character
    device reached without a symlink (O_NOFOLLOW; crun CVE-2026-88265): anything else -- a
    createContainer hook may have swapped it -- is left alone, and stdio stays what the caller
    gave.
    """
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError:
        return  # missing, or a symlink (ELOOP): keep the caller's stdio
    try:
        if not _is_dev_null(os.fstat(fd)):
            return
        for n in range(3):
            try:
                st = os.fstat(n)
            except OSError:
                continue  # a closed stdio fd stays closed
            if _is_dev_null(st):
                os.dup2(fd, n)
    finally:
        os.close(fd)
