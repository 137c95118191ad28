"""prepare_rootfs: root propagation, the rootfs bind, every ``mounts[]`` entry, then /dev.

Runs in the forked init, in its new mount namespace, before pivot_root (runc's
``prepareRootfs``).  Every destination is resolved inside the rootfs (rootfs/resolve.py) and
every mount lands on ``/proc/self/fd/N`` of the opened, verified target — at this point /proc is
the host's procfs, whose ``self`` is this process.  Errors are OSErrors whose text names the
mount (``mount tmpfs on /dev: Permission denied``) and whose filename is the destination.
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.linux import mount as m
from ociruntime.linux.mountinfo import parse_mountinfo
from ociruntime.record import dataclass, replace
from ociruntime.rootfs.devices import setup_console_file, setup_dev
from ociruntime.rootfs.plan import MountSpec, RootfsPlan, check_proc_destination
from ociruntime.rootfs.resolve import (
    check_kind,
    create_file,
    error_context,
    fd_path,
    mkdir_all,
    open_in_root,
    oserror,
    secure_join,
    verify_fd,
)

PROC_SUPER_MAGIC = 0x9FA0
# Flags that only make sense on the initial mount(2), not on a bind remount.
_NOT_REMOUNT = m.MS_BIND | m.MS_REC | m.MS_REMOUNT | m.MS_PROPAGATION
_COPY_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Root:
    """The rootfs while it is being prepared: an O_PATH fd and the path the kernel reports for it."""

    fd: int
    path: str


def proc_fd(fd: int) -> str:
    """The magic link that names exactly the object behind ``fd`` (mount(2) targets)."""
    return f"/proc/self/fd/{fd}"


def remount_bind(fd: int, flags: int, clear: int = 0) -> None:
    """MS_BIND|MS_REMOUNT the mount whose root is ``fd`` with ``flags`` (per-mount flags only).

    In a user namespace the kernel locks the nosuid/nodev/noexec/ro/atime flags a mount had when
    it was copied in, and a remount that would drop one fails with EPERM; retry once keeping the
    mount's current locked flags unless the caller explicitly asked to clear one (runc does the
    same, see mount(2) "EPERM" and mount_namespaces(7) "locked").
    """
    want = (flags & ~_NOT_REMOUNT) | m.MS_BIND | m.MS_REMOUNT
    try:
        m.mount(None, proc_fd(fd), None, want)
        return
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        current = m.mount_flags_of(fd)
        if current & clear & m.MS_LOCKABLE:
            raise
    want |= current & (m.MS_LOCKABLE | m.MS_NODIRATIME)
    if not flags & m.MS_ATIME_MASK:
        want |= current & m.MS_ATIME_MASK
    m.mount(None, proc_fd(fd), None, want)


def apply_propagation(fd: int, spec: MountSpec) -> None:
    """Per-mount propagation (rprivate, rslave, ...) and the recursive r* attributes."""
    for prop in spec.propagation:
        m.mount(None, proc_fd(fd), None, prop)
    if spec.attr_set or spec.attr_clr:
        m.mount_setattr(fd, "", m.AT_EMPTY_PATH | m.AT_RECURSIVE, spec.attr_set, spec.attr_clr,
                        name=spec.destination)


def clone_bind_sources(plan: RootfsPlan) -> RootfsPlan:
    """Detached clones (open_tree) of every bind source, made with the runtime's credentials.

    Called by stage 1 before it enters the container's user namespace: from inside, a source
    below a directory only the host's root may search (0700) cannot even be looked up, which
    runc solves the same way (the parent's mount fds).  The clones become slaves so that
    nothing mounted beneath them in the container propagates back to the host, as with a bind
    from the rslave copy of the host's tree.  A source that cannot be cloned is left to the
    init, which reports it as before.
    """
    specs = []
    for spec in plan.mounts:
        if spec.is_bind:
            flags = m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC | (m.AT_RECURSIVE if spec.recursive else 0)
            try:
                tree = m.open_tree(m.AT_FDCWD, spec.source, flags, name=spec.source)
            except OSError:
                specs.append(spec)
                continue
            try:
                m.mount_setattr(tree, "", m.AT_EMPTY_PATH | m.AT_RECURSIVE, propagation=m.MS_SLAVE,
                                name=spec.source)
            except BaseException:
                os.close(tree)
                raise
            spec = replace(spec, source_fd=tree)
        specs.append(spec)
    return replace(plan, mounts=tuple(specs))


def _source_fd(spec: MountSpec) -> int:
    """The source as we can reach it: an O_PATH fd of the path, else a dup of stage 1's clone.

    The path comes first: a bind made in the container's namespace keeps the flags the kernel
    locked on the copied source mount (mount_namespaces(7)); the clone is only for sources the
    user namespace cannot reach.
    """
    try:
        return os.open(spec.source, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        if spec.source_fd < 0:
            raise oserror(e.errno or errno.ENOENT, f"mount source {spec.source}", spec.source) from None
        return os.dup(spec.source_fd)


def _source_is_procfs(spec: MountSpec) -> bool:
    fd = _source_fd(spec)
    try:
        return m.fstatfs_type(fd) == PROC_SUPER_MAGIC and os.fstat(fd).st_ino == 1
    finally:
        os.close(fd)


def _target_is_dir(spec: MountSpec) -> bool:
    """A bind of a non-directory needs a file to mount on; everything else needs a directory."""
    if not spec.is_bind:
        return True
    fd = _source_fd(spec)
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def _not_ordinary_dir(spec: MountSpec) -> OSError:
    """runc's refusal of a proc/sysfs destination that is a symlink or not a directory."""
    return oserror(errno.ENOTDIR, f'filesystem "{spec.fstype}" must be mounted on ordinary directory',
                   spec.destination)


def open_target(root: Root, spec: MountSpec, *, want_dir: bool) -> tuple[int, str]:
    """Resolve, create and open the destination of ``spec``; return (O_PATH fd, in-root path).

    proc and sysfs go only onto real directories reached without any symlink; nothing but proc
    goes on /proc and only lxcfs-style binds go below it (runc's checkProcMount), checked on the
    path the destination *really* resolves to inside the rootfs.
    """
    dest = spec.destination
    strict = spec.fstype in ("proc", "sysfs")
    try:
        rel = secure_join(root.fd, dest, follow=not strict, name=dest)
    except OSError as e:
        if strict and e.errno == errno.ELOOP:
            raise _not_ordinary_dir(spec) from None
        raise
    in_root = "/" + rel
    procfs_src = spec.is_bind and in_root == "/proc" and _source_is_procfs(spec)
    reason = check_proc_destination(in_root, spec.fstype, spec.is_bind, procfs_src)
    if reason:
        raise oserror(errno.EPERM, reason, dest)
    if want_dir and strict:
        try:
            fd = mkdir_all(root.fd, rel, no_symlinks=True, root_path=root.path, name=dest)
        except OSError as e:
            # A file where the directory should be, or a symlink planted meanwhile.
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise _not_ordinary_dir(spec) from None
            raise
    elif want_dir:
        fd = mkdir_all(root.fd, rel, root_path=root.path, name=dest)
    else:
        fd = create_file(root.fd, rel, root_path=root.path, name=dest)
    try:
        check_kind(fd, want_dir=want_dir, name=dest)
    except BaseException:
        os.close(fd)
        raise
    return fd, rel


def reopen_target(root: Root, rel: str, name: str, *, want_dir: bool) -> int:
    """Re-open the destination after mounting, so the fd is the *new* mount's root, and verify it."""
    flags = os.O_PATH | (os.O_DIRECTORY if want_dir else os.O_NOFOLLOW)
    fd = open_in_root(root.fd, rel, flags, name=name)
    try:
        check_kind(fd, want_dir=want_dir, name=name)
        verify_fd(fd, root.path, rel, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_file(src_dir: int, dst_dir: int, name: str, st: os.stat_result) -> None:
    # O_NONBLOCK: a FIFO swapped in after the lstat must not hang us; fstat re-checks the type.
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dst_dir)
        try:
            while os.sendfile(dst, src, None, _COPY_CHUNK) > 0:
                pass
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_owner_mode(dst_dir: int, name: str, st: os.stat_result) -> None:
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        # Entries were just created by us in a private tmpfs: chmod cannot be redirected.
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst_dir)


def copy_tree(src_dir: int, dst_dir: int) -> None:
    """Copy a directory's content fd-to-fd without following any symlink (tmpcopyup)."""
    for entry in os.scandir(src_dir):
        name = entry.name
        st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst_dir)
            sub_src = os.open(name, _DIR_FLAGS, dir_fd=src_dir)
            try:
                sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_dir)
                try:
                    copy_tree(sub_src, sub_dst)
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)
        elif stat.S_ISREG(mode):
            _copy_file(src_dir, dst_dir, name, st)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src_dir), name, dir_fd=dst_dir)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, mode, st.st_rdev, dir_fd=dst_dir)
        else:
            continue  # sockets cannot be copied
        _copy_owner_mode(dst_dir, name, st)


def _copy_up(content: int, new_root: int) -> None:
    """Seed the new tmpfs (``new_root``, O_PATH) with the covered directory's content."""
    dst = os.open(proc_fd(new_root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(content)
        os.fchown(dst, st.st_uid, st.st_gid)
        os.fchmod(dst, stat.S_IMODE(st.st_mode))
        copy_tree(content, dst)
    finally:
        os.close(dst)


def _mount_bind(spec: MountSpec, target: int) -> None:
    if spec.source_fd >= 0 and not os.path.exists(spec.source):
        # Out of the user namespace's reach: attach stage 1's clone instead (runc's mount fds).
        m.move_mount(spec.source_fd, "", target, "", m.MOVE_MOUNT_F_EMPTY_PATH | m.MOVE_MOUNT_T_EMPTY_PATH,
                     name=spec.destination)
        return
    m.mount(spec.source, proc_fd(target), None, m.MS_BIND | (m.MS_REC if spec.recursive else 0))


def tmpfs_data(root: Root, spec: MountSpec) -> str:
    """A tmpfs takes the mode of the directory it covers unless its options say ``mode=``
    (runc's createOpenMountpoint): a tmpfs on the image's 1777 /tmp stays 1777, setgid stays.

    Looked up before open_target creates a missing destination, which then keeps tmpfs's own
    default (1777) as in runc; the lookup follows symlinks inside the root as open_target does.
    """
    if any(o.startswith("mode=") for o in spec.data.split(",")):
        return spec.data
    try:
        fd = open_in_root(root.fd, spec.destination.lstrip("/"), os.O_PATH, name=spec.destination)
    except OSError:
        return spec.data  # missing (or unusable: open_target reports that properly)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    return f"mode={mode:04o}" + ("," + spec.data if spec.data else "")


def mount_entry(root: Root, spec: MountSpec) -> None:
    """Apply one non-cgroup ``mounts[]`` entry (runc's mountToRootfs)."""
    want_dir = _target_is_dir(spec)
    data = tmpfs_data(root, spec) if spec.fstype == "tmpfs" else spec.data
    fd, rel = open_target(root, spec, want_dir=want_dir)
    content = -1
    try:
        if spec.copyup:
            # Opened before the tmpfs covers it; the fd keeps reaching the image's directory.
            content = os.open(proc_fd(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # A late read-only mount starts writable: finalize_rootfs makes it read-only once its
        # copy-up, device nodes or nested mount points exist.
        flags = spec.flags & ~m.MS_RDONLY if spec.late_ro else spec.flags
        if spec.is_bind:
            _mount_bind(spec, fd)
        else:
            m.mount(spec.source or spec.fstype, proc_fd(fd), spec.fstype, flags, data or None)
    finally:
        os.close(fd)
    new = reopen_target(root, rel, spec.destination, want_dir=want_dir)
    try:
        if content != -1:
            _copy_up(content, new)
        if spec.is_bind and (spec.flags & ~_NOT_REMOUNT or spec.clear):
            # MS_BIND ignores every other flag: a second, remounting call applies them.
            remount_bind(new, flags, spec.clear)
        apply_propagation(new, spec)
    finally:
        if content != -1:
            os.close(content)
        os.close(new)


def mount_sysfs_userns(root: Root, spec: MountSpec) -> None:
    """sysfs in a user namespace: the kernel allows a new instance only to the owner of the
    network namespace (a rootless container without one of its own gets EPERM), so fall back to
    a recursive bind of the host's /sys, as crun and podman do.  Still resolved as a sysfs
    destination (a real directory, no symlink), and with ``ro`` read-only all the way down:
    the bind brings the host's sub-mounts along."""
    try:
        mount_entry(root, spec)
        return
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
    attr = m.MOUNT_ATTR_RDONLY if spec.flags & m.MS_RDONLY else 0
    mount_entry(root, replace(spec, source="/sys", is_bind=True, recursive=True, data="",
                              flags=spec.flags | m.MS_BIND | m.MS_REC, attr_set=spec.attr_set | attr))


def _v1_mount_data(hierarchy: str) -> str:
    """Mount data selecting one v1 hierarchy by its /sys/fs/cgroup directory name."""
    if hierarchy == "systemd":
        return "none,name=systemd"
    if hierarchy.startswith("name="):
        return "none," + hierarchy
    return hierarchy


def _open_subdir(parent: int, name: str) -> int:
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass
    return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def _mount_ro_bind(source: str, parent: int, name: str, flags: int) -> None:
    """Bind ``source`` onto ``parent/name`` and make the bind carry ``flags`` (ro, nosuid, ...)."""
    sub = _open_subdir(parent, name)
    try:
        m.mount(source, proc_fd(sub), None, m.MS_BIND | m.MS_REC)
    finally:
        os.close(sub)
    sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        remount_bind(sub, flags)
    finally:
        os.close(sub)


def _cgroup_hierarchy(plan: RootfsPlan, parent: int, hier: str, host_dir: str, flags: int) -> None:
    with error_context(f"mount cgroup {hier}", hier):
        if not plan.cgroupns:
            # Without a cgroup namespace a fresh mount would show the host's whole tree: bind the
            # container's own cgroup instead (runc's v1 "emulated cgroupns").
            _mount_ro_bind(host_dir, parent, hier, flags)
            return
        sub = _open_subdir(parent, hier)
        try:
            # In a cgroup namespace a fresh mount's root is the namespace root.
            if hier == "unified":
                m.mount("cgroup2", proc_fd(sub), "cgroup2", flags)
            else:
                data = plan.cgroup_data.get(hier) or _v1_mount_data(hier)
                m.mount("cgroup", proc_fd(sub), "cgroup", flags, data)
        finally:
            os.close(sub)


def _cgroup_symlinks(parent: int, hierarchies: list[str]) -> None:
    """``cpu -> cpu,cpuacct`` style links for co-mounted controllers, as on the host."""
    for hier in hierarchies:
        if "," not in hier:
            continue
        for part in hier.split(","):
            try:
                os.symlink(hier, part, dir_fd=parent)
            except FileExistsError:
                pass


def _mount_cgroup_v1(root: Root, plan: RootfsPlan, spec: MountSpec, flags: int) -> None:
    fd, rel = open_target(root, spec, want_dir=True)
    try:
        # The tmpfs starts writable so the hierarchy directories can be made; runc remounts it
        # read-only at the end when the mount asks for ro (always, without a cgroupns).
        m.mount("tmpfs", proc_fd(fd), "tmpfs", flags & ~m.MS_RDONLY, "mode=755")
    finally:
        os.close(fd)
    tmp = reopen_target(root, rel, spec.destination, want_dir=True)
    try:
        hierarchies = sorted(plan.cgroup_paths)
        for hier in hierarchies:
            _cgroup_hierarchy(plan, tmp, hier, plan.cgroup_paths[hier], flags)
        _cgroup_symlinks(tmp, hierarchies)
        if flags & m.MS_RDONLY:
            remount_bind(tmp, flags)
        apply_propagation(tmp, spec)
    finally:
        os.close(tmp)


def _mount_cgroup_v2(root: Root, plan: RootfsPlan, spec: MountSpec, flags: int) -> None:
    fd, rel = open_target(root, spec, want_dir=True)
    try:
        if plan.cgroupns:
            m.mount("cgroup2", proc_fd(fd), "cgroup2", flags)
        else:
            host_dir = plan.cgroup_paths.get("unified")
            if not host_dir:
                raise oserror(errno.ENOENT, "no cgroup2 directory for the container", spec.destination)
            m.mount(host_dir, proc_fd(fd), None, m.MS_BIND | m.MS_REC)
    finally:
        os.close(fd)
    new = reopen_target(root, rel, spec.destination, want_dir=True)
    try:
        if not plan.cgroupns:
            remount_bind(new, flags)
        apply_propagation(new, spec)
    finally:
        os.close(new)


def mount_cgroup(root: Root, plan: RootfsPlan, spec: MountSpec) -> None:
    """A ``type: cgroup``/``cgroup2`` entry: the layout depends on the host and the cgroupns.

    Without a cgroup namespace a writable cgroupfs shows (and lets one rewrite) cgroups beyond
    the container's own, so read-only is forced there (stricter than runc, which forces it only
    for rootless containers, CVE-2023-25809) -- unless the process could mount a writable
    cgroupfs itself anyway (CAP_SYS_ADMIN in its bounding set, no user namespace: a privileged
    container, to which containerd gives an ``rw`` cgroup mount for systemd or an engine
    inside).  Otherwise ``ro`` in the options is honoured.
    """
    flags = spec.flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
    if not plan.cgroupns and not plan.can_mount_cgroupfs:
        flags |= m.MS_RDONLY
    if plan.cgroup_layout == "v2" or spec.fstype == "cgroup2":
        _mount_cgroup_v2(root, plan, spec, flags)
    else:
        _mount_cgroup_v1(root, plan, spec, flags)


def _describe(spec: MountSpec) -> str:
    if spec.is_bind:
        return f"bind mount {spec.source} on {spec.destination}"
    return f"mount {spec.fstype} on {spec.destination}"


def set_root_propagation(flags: int) -> None:
    """mount("", "/", MS_SLAVE|MS_REC by default): our mounts never reach the host."""
    with error_context("set propagation of /", "/"):
        m.mount(None, "/", None, flags)


def _parent_mount(rootfs: str) -> tuple[str, str]:
    """(mount point, optional fields) of the mount that contains ``rootfs``."""
    with open("/proc/self/mountinfo", "rb") as f:
        entries = parse_mountinfo(f.read())
    best = ("/", "")
    for entry in entries:
        mp = entry.mount_point
        if (rootfs == mp or rootfs.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best[0]):
            best = (mp, entry.optional)
    return best


def make_parent_private(rootfs: str) -> None:
    """runc's rootfsParentMountPrivate: pivot_root(2) refuses a shared parent mount, and the
    rootfs bind below must not propagate to other namespaces."""
    mount_point, optional = _parent_mount(rootfs)
    if any(field.startswith("shared:") for field in optional.split()):
        with error_context(f"make {mount_point} private", mount_point):
            m.mount(None, mount_point, None, m.MS_PRIVATE)


def bind_rootfs(rootfs: str) -> None:
    """Bind the rootfs onto itself so it is a mount point (pivot_root needs one)."""
    with error_context(f"bind mount rootfs {rootfs}", rootfs):
        m.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC)


def open_root(rootfs: str) -> Root:
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return Root(fd, fd_path(fd))


def prepare_rootfs(plan: RootfsPlan) -> None:
    """Set up everything under the rootfs that must exist before pivot_root."""
    if plan.mntns:
        set_root_propagation(plan.root_propagation)
        make_parent_private(plan.rootfs)
        bind_rootfs(plan.rootfs)
    # Without a mount namespace of its own the container works in the runtime's: the host's
    # propagation must stay as it is and the rootfs needs no self-bind (chroot, not pivot_root,
    # takes any directory), so only the mounts beneath the rootfs are made, and delete removes them.
    # Opened after the self-bind, so the fd is on the new mount every destination lives under.
    root = open_root(plan.rootfs)
    try:
        for spec in plan.mounts:
            with error_context(_describe(spec), spec.destination):
                if spec.fstype in ("cgroup", "cgroup2"):
                    mount_cgroup(root, plan, spec)
                elif spec.fstype == "sysfs" and plan.userns:
                    mount_sysfs_userns(root, spec)
                else:
                    mount_entry(root, spec)
        if plan.default_devices:
            setup_dev(root.fd, root.path, plan)
        if plan.console:
            with error_context("create /dev/console", "/dev/console"):
                setup_console_file(root.fd, root.path, replace=plan.default_devices)
    finally:
        os.close(root.fd)
        # Stage 1's clones, attached or not, are done with; an unused one would keep its source
        # tree pinned until execve.
        for spec in plan.mounts:
            if spec.source_fd >= 0:
                os.close(spec.source_fd)
