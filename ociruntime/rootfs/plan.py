"""Turn the config's root/mounts/devices/masked/readonly fields into an immutable RootfsPlan.

Runs in the parent, before fork, and is pure apart from a stat of bind sources that claim to be
procfs: the forked init only executes the plan (it must not parse, import or read config.json).
Option parsing follows the runtime spec's config.md and runc's ``parseMountOptions``; every
problem is a :class:`~ociruntime.errors.ConfigError` with one line naming the mount.
"""

from __future__ import annotations

import os
import posixpath

from ociruntime.errors import ConfigError
from ociruntime.linux import mount as m
from ociruntime.record import dataclass, field, replace

# option -> (clear?, MS_* flag), runc's parseMountOptions table.
_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "acl": (False, m.MS_POSIXACL),
    "async": (True, m.MS_SYNCHRONOUS),
    "atime": (True, m.MS_NOATIME),
    "bind": (False, m.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, m.MS_NODEV),
    "diratime": (True, m.MS_NODIRATIME),
    "dirsync": (False, m.MS_DIRSYNC),
    "exec": (True, m.MS_NOEXEC),
    "iversion": (False, m.MS_I_VERSION),
    "lazytime": (False, m.MS_LAZYTIME),
    "loud": (True, m.MS_SILENT),
    "mand": (False, m.MS_MANDLOCK),
    "noacl": (True, m.MS_POSIXACL),
    "noatime": (False, m.MS_NOATIME),
    "nodev": (False, m.MS_NODEV),
    "nodiratime": (False, m.MS_NODIRATIME),
    "noexec": (False, m.MS_NOEXEC),
    "noiversion": (True, m.MS_I_VERSION),
    "nolazytime": (True, m.MS_LAZYTIME),
    "nomand": (True, m.MS_MANDLOCK),
    "norelatime": (True, m.MS_RELATIME),
    "nostrictatime": (True, m.MS_STRICTATIME),
    "nosuid": (False, m.MS_NOSUID),
    "nosymfollow": (False, m.MS_NOSYMFOLLOW),
    "rbind": (False, m.MS_BIND | m.MS_REC),
    "relatime": (False, m.MS_RELATIME),
    "remount": (False, m.MS_REMOUNT),
    "ro": (False, m.MS_RDONLY),
    "rw": (True, m.MS_RDONLY),
    "silent": (False, m.MS_SILENT),
    "strictatime": (False, m.MS_STRICTATIME),
    "suid": (True, m.MS_NOSUID),
    "sync": (False, m.MS_SYNCHRONOUS),
    "symfollow": (True, m.MS_NOSYMFOLLOW),
}

PROPAGATION_OPTIONS: dict[str, int] = {
    "private": m.MS_PRIVATE,
    "rprivate": m.MS_PRIVATE | m.MS_REC,
    "shared": m.MS_SHARED,
    "rshared": m.MS_SHARED | m.MS_REC,
    "slave": m.MS_SLAVE,
    "rslave": m.MS_SLAVE | m.MS_REC,
    "unbindable": m.MS_UNBINDABLE,
    "runbindable": m.MS_UNBINDABLE | m.MS_REC,
}

# option -> (clear?, MOUNT_ATTR_* flag) for mount_setattr(AT_RECURSIVE), runc's recAttrFlags.
_RECURSIVE_OPTIONS: dict[str, tuple[bool, int]] = {
    "rro": (False, m.MOUNT_ATTR_RDONLY),
    "rrw": (True, m.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, m.MOUNT_ATTR_NOSUID),
    "rsuid": (True, m.MOUNT_ATTR_NOSUID),
    "rnodev": (False, m.MOUNT_ATTR_NODEV),
    "rdev": (True, m.MOUNT_ATTR_NODEV),
    "rnoexec": (False, m.MOUNT_ATTR_NOEXEC),
    "rexec": (True, m.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, m.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, m.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, m.MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, m.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, m.MOUNT_ATTR_NOATIME),
    "ratime": (True, m.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, m.MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, m.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, m.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, m.MOUNT_ATTR_NOSYMFOLLOW),
}

_IDMAP_OPTIONS = ("idmap", "ridmap")

# Files under /proc that runc lets a bind mount cover (lxcfs emulates them), checkProcMount.
ALLOWED_PROC_MOUNTS = (
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
)

# runc's AllowedDevices that are also created: (path, major, minor), all char devices 0666 root.
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

_CGROUP_LAYOUTS = ("v1", "v2", "hybrid")
_DEVICE_KINDS = ("c", "b", "u", "p")
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to chown(2): never a real owner
_MAX_DEVNUM = 2**32 - 1


@dataclass(frozen=True)
class MountSpec:
    """One ``mounts[]`` entry, pre-parsed for the child."""

    index: int
    source: str
    destination: str
    fstype: str
    flags: int
    clear: int
    propagation: tuple[int, ...]
    attr_set: int
    attr_clr: int
    data: str
    is_bind: bool
    recursive: bool
    copyup: bool = False  # ``tmpcopyup``: seed a new tmpfs with the directory it covers
    # ``ro`` applied by finalize_rootfs, once everything beneath the mount exists (see
    # _late_readonly); the mount itself is made read-write.
    late_ro: bool = False
    # A detached clone of the bind source (open_tree), made by stage 1 with the runtime's
    # credentials before it entered the user namespace (clone_bind_sources); -1: none.
    source_fd: int = -1


@dataclass(frozen=True)
class DeviceSpec:
    """One device node to create under the container's /dev."""

    path: str
    kind: str  # 'c', 'b', 'p' or 'u' (unbuffered char, created as 'c')
    major: int
    minor: int
    mode: int = 0o666  # permission bits only
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class RootfsPlan:
    """Everything prepare_rootfs/pivot/finalize_rootfs need, computed before fork."""

    rootfs: str
    readonly: bool
    root_propagation: int
    mounts: tuple[MountSpec, ...]
    devices: tuple[DeviceSpec, ...]
    default_devices: bool
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    no_pivot: bool
    userns: bool
    console: bool
    # hierarchy name -> host absolute cgroup dir of the container.  Names are the directory
    # names under /sys/fs/cgroup on the host: "memory", "cpu,cpuacct", "systemd" (the
    # name=systemd hierarchy), "unified" for the cgroup2 hierarchy (on pure v2 too).
    cgroup_paths: dict[str, str] = field(default_factory=dict)
    # v1 mount data per directory where the name does not say it ("systemd" -> "none,name=systemd").
    cgroup_data: dict[str, str] = field(default_factory=dict)
    cgroupns: bool = False
    # Whether the process could mount a writable cgroupfs itself (CAP_SYS_ADMIN in its bounding
    # set, no user namespace): then forcing ours read-only protects nothing (rootfs/mounts.py).
    can_mount_cgroupfs: bool = False
    cgroup_layout: str = "hybrid"
    # The configured rootfsPropagation, applied to the new "/" after pivot_root (0: none given).
    final_propagation: int = 0
    # False when linux.namespaces lists no mount namespace: the init then works in the
    # runtime's own mount namespace (chroot, no propagation changes, no rootfs self-bind), and
    # delete unmounts what it mounted beneath the rootfs (rootfs/cleanup.py).
    mntns: bool = True


def _fail(what: str, msg: str) -> ConfigError:
    return ConfigError(f"{what}: {msg}")


def _clean_abs(path: object, what: str) -> str:
    """Validate an absolute container path and return it lexically cleaned."""
    if not isinstance(path, str) or not path:
        raise _fail(what, "path must be a non-empty string")
    if "\0" in path:
        raise _fail(what, "path contains a NUL byte")
    if not path.startswith("/"):
        raise _fail(what, f"path {path!r} must be absolute")
    cleaned = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX allows it to be special); Linux does not care.
    return "/" + cleaned.lstrip("/")


@dataclass
class _Options:
    flags: int = 0
    clear: int = 0
    propagation: list[int] = field(default_factory=list)
    attr_set: int = 0
    attr_clr: int = 0
    data: list[str] = field(default_factory=list)
    copyup: bool = False
    unknown: list[str] = field(default_factory=list)


def _apply_option(opts: _Options, o: str) -> None:
    if o in _FLAG_OPTIONS:
        clear, flag = _FLAG_OPTIONS[o]
        if clear:
            opts.flags &= ~flag
            opts.clear |= flag
        else:
            opts.flags |= flag
            opts.clear &= ~flag
    elif o in PROPAGATION_OPTIONS:
        opts.propagation.append(PROPAGATION_OPTIONS[o])
    elif o in _RECURSIVE_OPTIONS:
        clear, attr = _RECURSIVE_OPTIONS[o]
        if clear:
            opts.attr_clr |= attr
            opts.attr_set &= ~attr
        else:
            opts.attr_set |= attr
            opts.attr_clr &= ~attr
            if attr & m.MOUNT_ATTR__ATIME == attr:
                # mount_setattr(2): an access-time mode in attr_set needs MOUNT_ATTR__ATIME in attr_clr.
                opts.attr_clr |= m.MOUNT_ATTR__ATIME
    elif o == "tmpcopyup":
        opts.copyup = True
    elif o.startswith("x-"):
        # mount(8) userspace options (x-systemd.*): never meant for the kernel.
        pass
    else:
        opts.data.append(o)
        if "=" not in o:
            opts.unknown.append(o)


def parse_options(options: object, what: str = "mount") -> _Options:
    """Parse a mount's ``options`` list into flags, cleared flags, propagation, attrs and data."""
    if options is None:
        options = []
    if not isinstance(options, list):
        raise _fail(what, "options must be a list of strings")
    opts = _Options()
    for o in options:
        if not isinstance(o, str) or "\0" in o:
            raise _fail(what, f"invalid option {o!r}")
        if o in _IDMAP_OPTIONS or o.startswith(("idmap=", "ridmap=")):
            raise _fail(what, "idmap mounts are not supported yet")
        _apply_option(opts, o)
    return opts


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def check_proc_destination(dest: str, fstype: str, is_bind: bool, source_is_procfs: bool) -> str | None:
    """runc's checkProcMount: why a mount at ``dest`` (cleaned, in-root) is refused, or None.

    Only a fresh proc (or a bind of a procfs root) may cover /proc itself; below /proc only binds
    over the lxcfs-style files in ALLOWED_PROC_MOUNTS are allowed.
    """
    if not _under(dest, "/proc"):
        return None
    if dest == "/proc":
        if fstype == "proc" and not is_bind:
            return None
        if is_bind and source_is_procfs:
            return None
        return f"{dest} cannot be mounted because it is not of type proc"
    if is_bind and dest in ALLOWED_PROC_MOUNTS:
        return None
    return f"{dest} cannot be mounted because it is inside /proc"


def _source_is_procfs(source: str) -> bool:
    try:
        fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return m.fstatfs_type(fd) == 0x9FA0 and os.fstat(fd).st_ino == 1
    finally:
        os.close(fd)


def _parse_mount(index: int, entry: object, bundle: str) -> MountSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"mounts[{index}]: must be an object")
    dest = _clean_abs(entry.get("destination"), f"mounts[{index}] destination")
    what = f"mount {dest}"
    if dest == "/":
        raise _fail(what, "cannot mount over the container root")
    fstype = entry.get("type") or ""
    source = entry.get("source") or ""
    if not isinstance(fstype, str) or not isinstance(source, str) or "\0" in fstype + source:
        raise _fail(what, "type and source must be strings without NUL bytes")
    if entry.get("uidMappings") or entry.get("gidMappings"):
        raise _fail(what, "idmap mounts are not supported yet")
    opts = parse_options(entry.get("options"), what)
    is_bind = fstype == "bind" or bool(opts.flags & m.MS_BIND)
    recursive = is_bind and bool(opts.flags & m.MS_REC)
    if is_bind:
        if not source:
            raise _fail(what, "bind mount without a source")
        if opts.unknown:
            # A bind ignores filesystem data, so a mistyped "readonly" would silently give rw.
            raise _fail(what, f"unknown mount option {opts.unknown[0]!r}")
        # config.md: a relative bind source is relative to the bundle.
        source = os.path.normpath(os.path.join(bundle, source))
        opts.flags |= m.MS_BIND
        opts.data.clear()
    elif not fstype:
        raise _fail(what, "mount type is required (or a bind/rbind option)")
    if opts.copyup and (is_bind or fstype != "tmpfs"):
        raise _fail(what, "tmpcopyup is only valid for tmpfs mounts")
    procfs_source = is_bind and dest == "/proc" and _source_is_procfs(source)
    reason = check_proc_destination(dest, fstype, is_bind, procfs_source)
    if reason:
        raise ConfigError(reason)
    return MountSpec(
        index=index,
        source=source,
        destination=dest,
        fstype="" if is_bind else fstype,
        flags=opts.flags & ~m.MS_PROPAGATION,
        clear=opts.clear,
        propagation=tuple(opts.propagation),
        attr_set=opts.attr_set,
        attr_clr=opts.attr_clr,
        data=",".join(opts.data),
        is_bind=is_bind,
        recursive=recursive,
        copyup=opts.copyup,
    )


def _late_readonly(mounts: tuple[MountSpec, ...], default_devices: bool) -> tuple[MountSpec, ...]:
    """Mark the ``ro`` mounts that are mounted read-write and made read-only at the end.

    Like runc's mountPropagate/finalizeRootfs: a tmpfs (its mode may still be set, a copy-up
    filled) and /dev (device nodes, symlinks, devpts and /dev/console go beneath it) always;
    any other mount when a later mount goes beneath it, whose mount point may have to be made.
    Not proc and sysfs: a user namespace may refuse a read-write one where the visible instance
    is read-only (mount_too_revealing), and their directories exist already.  Cgroup mounts
    handle ``ro`` themselves.
    """
    out = []
    for i, ms in enumerate(mounts):
        late = False
        if ms.flags & m.MS_RDONLY and ms.fstype not in ("proc", "sysfs", "cgroup", "cgroup2"):
            below = any(_under(later.destination, ms.destination) and later.destination != ms.destination
                        for later in mounts[i + 1:])
            dev = ms.destination == "/dev" and default_devices
            late = ms.fstype == "tmpfs" or dev or below
        out.append(replace(ms, late_ro=True) if late else ms)
    return tuple(out)


def _int_field(dev: dict, key: str, default: int | None, lo: int, hi: int, what: str) -> int:
    value = dev.get(key, default)
    if value is None:
        raise _fail(what, f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(what, f"{key} must be an integer in {lo}..{hi}")
    return value


def _parse_device(index: int, dev: object) -> DeviceSpec:
    if not isinstance(dev, dict):
        raise ConfigError(f"linux.devices[{index}]: must be an object")
    path = _clean_abs(dev.get("path"), f"linux.devices[{index}] path")
    what = f"device {path}"
    if not path.startswith("/dev/"):
        raise _fail(what, "device path must be under /dev")
    kind = dev.get("type")
    if kind not in _DEVICE_KINDS:
        raise _fail(what, f"type must be one of c, b, u, p (got {kind!r})")
    need = None if kind != "p" else 0
    major = _int_field(dev, "major", need, 0, _MAX_DEVNUM, what)
    minor = _int_field(dev, "minor", need, 0, _MAX_DEVNUM, what)
    # Real engines send fileMode with the file-type bits (podman: 8576 = 0o20600): keep the
    # permission bits only; the node type comes from ``type``.
    mode = _int_field(dev, "fileMode", 0o666, 0, 2**32 - 1, what) & 0o777
    uid = _int_field(dev, "uid", 0, 0, _MAX_ID, what)
    gid = _int_field(dev, "gid", 0, 0, _MAX_ID, what)
    return DeviceSpec(path=path, kind=kind, major=major, minor=minor, mode=mode, uid=uid, gid=gid)


def _devices(linux: dict) -> tuple[DeviceSpec, ...]:
    raw = linux.get("devices") or []
    if not isinstance(raw, list):
        raise ConfigError("linux.devices: must be a list")
    configured = [_parse_device(i, d) for i, d in enumerate(raw)]
    seen = {d.path for d in configured}
    # runc adds its default devices unless the config already names that path.
    defaults = [DeviceSpec(p, "c", ma, mi) for p, ma, mi in DEFAULT_DEVICES if p not in seen]
    return (*defaults, *configured)


def _paths(linux: dict, key: str) -> tuple[str, ...]:
    raw = linux.get(key) or []
    if not isinstance(raw, list):
        raise ConfigError(f"linux.{key}: must be a list")
    return tuple(_clean_abs(p, f"linux.{key}[{i}]") for i, p in enumerate(raw))


def _final_propagation(linux: dict) -> int:
    value = linux.get("rootfsPropagation") or ""
    if value and value not in PROPAGATION_OPTIONS:
        raise ConfigError(f"linux.rootfsPropagation: unknown propagation {value!r}")
    return PROPAGATION_OPTIONS.get(value, 0)


def _root_propagation(linux: dict) -> int:
    """Propagation of the host-copied "/" while the rootfs is prepared (before pivot_root)."""
    final = _final_propagation(linux)
    if not final or final & m.MS_UNBINDABLE:
        # runc's default: receive host mount events, never send ours back.  An unbindable "/"
        # would make the rootfs bind mount itself fail (EINVAL): that one is applied after
        # pivot_root only.
        return m.MS_SLAVE | m.MS_REC
    return final


def _bounding_has(process: dict, cap: str) -> bool:
    caps = process.get("capabilities")
    bounding = caps.get("bounding") if isinstance(caps, dict) else None
    return isinstance(bounding, list) and cap in bounding


def _namespaces(linux: dict) -> set[str]:
    raw = linux.get("namespaces") or []
    return {ns.get("type") for ns in raw if isinstance(ns, dict)}


def build_plan(
    config: dict, bundle: str, *, no_pivot: bool, cgroup_paths: dict[str, str], cgroup_layout: str,
    cgroup_data: dict[str, str] | None = None,
) -> RootfsPlan:
    """Build the immutable rootfs plan from a validated config; raise ConfigError on bad values."""
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise ConfigError("root.path: must be a non-empty string")
    if cgroup_layout not in _CGROUP_LAYOUTS:
        raise ConfigError(f"cgroup layout must be one of {', '.join(_CGROUP_LAYOUTS)}")
    # The rootfs is the engine's (trusted) host path: resolve it once here so the child can
    # compare the paths the kernel reports for its fds against it.
    rootfs = os.path.realpath(os.path.join(bundle, root["path"]))
    linux = config.get("linux") or {}
    raw_mounts = config.get("mounts") or []
    if not isinstance(raw_mounts, list):
        raise ConfigError("mounts: must be a list")
    mounts = tuple(_parse_mount(i, e, bundle) for i, e in enumerate(raw_mounts))
    # runc's needsSetupDev: a bind mount on /dev brings its own nodes.
    default_devices = not any(ms.is_bind and ms.destination == "/dev" for ms in mounts)
    mounts = _late_readonly(mounts, default_devices)
    namespaces = _namespaces(linux)
    masked, readonly = _paths(linux, "maskedPaths"), _paths(linux, "readonlyPaths")
    if "mount" not in namespaces and (masked or readonly):
        # Masks and read-only binds would land on the host's own /proc and /sys (runc's text).
        raise ConfigError("unable to restrict sys entries without a private MNT namespace")
    process = config.get("process") or {}
    return RootfsPlan(
        rootfs=rootfs,
        readonly=bool(root.get("readonly", False)),
        root_propagation=_root_propagation(linux),
        mounts=mounts,
        devices=_devices(linux),
        default_devices=default_devices,
        masked_paths=masked,
        readonly_paths=readonly,
        no_pivot=no_pivot,
        userns="user" in namespaces,
        console=bool(process.get("terminal", False)),
        cgroup_paths=dict(cgroup_paths),
        cgroup_data=dict(cgroup_data or {}),
        cgroupns="cgroup" in namespaces,
        can_mount_cgroupfs="user" not in namespaces and _bounding_has(process, "CAP_SYS_ADMIN"),
        cgroup_layout=cgroup_layout,
        final_propagation=_final_propagation(linux),
        mntns="mount" in namespaces,
    )


def mount_option_names() -> list[str]:
    """Every mount option the planner understands (for the ``features`` document)."""
    names = {*_FLAG_OPTIONS, *PROPAGATION_OPTIONS, *_RECURSIVE_OPTIONS, "tmpcopyup"}
    return sorted(names)
