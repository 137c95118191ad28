"""Semantic checks on a schema-valid config.json: the rules a JSON schema cannot express.

Everything here runs before anything is created, so a bad config costs one clear error line
and leaves nothing behind (SECURITY.md, "Bad input").  The model is runc's
``libcontainer/configs/validate`` plus the integer and string hygiene a Python runtime needs
(bool is an int, ctypes truncates, C strings stop at NUL).

Each check is a small function taking a :class:`Ctx`; :data:`CHECKS` lists them in order.
Errors are ``ConfigError("<json path>: <reason>")``; the loader prefixes ``config.json: ``.
Host facts (known filesystems, LSMs) come from a :class:`Host`, so tests can pin them.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import stat

from ociruntime import jsonio
from ociruntime.cgroups.devices import access_warning, split_access
from ociruntime.errors import ConfigError, describe_oserror
from ociruntime.hooks import HOOK_KINDS
from ociruntime.linux.caps import CAP_NAMES
from ociruntime.linux.libc import LIBC
from ociruntime.linux.libc import check as libc_check
from ociruntime.linux.ns import NAMESPACES
from ociruntime.linux.rlimit import RLIMITS as RLIMIT_TABLE
from ociruntime.record import dataclass, field
from ociruntime.rootfs.plan import mount_option_names
from ociruntime.spec.schema import json_path

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, NoReturn

JPath = tuple[str | int, ...]

ID_MAX = 4294967294  # 4294967295 is (uid_t)-1: setresuid(2) reads it as "leave unchanged"
HOST_NAME_MAX = 64  # gethostname(2), setdomainname(2)
NGROUPS_MAX = 65536  # setgroups(2)

# ioctl_ns(2) and statfs(2)
NS_GET_NSTYPE = 0xB703
NSFS_MAGIC = 0x6E736673
# The tables below belong to the modules that act on them; checking against the same tables
# keeps validation and execution from disagreeing.
CLONE_FLAGS: dict[str, int] = {name: flag for name, (flag, _) in NAMESPACES.items()}
# Mount flags, propagation, recursive attributes and tmpcopyup (rootfs/plan.py), plus the OCI
# idmap extensions, which the planner refuses with its own clear error.
EXTENSION_OPTIONS = frozenset({"idmap", "ridmap"})
# Filesystem-specific flag options without "=", passed through as mount data.
FS_DATA_FLAGS = frozenset(
    # devpts, tmpfs, overlay, ext4/xfs, fuse
    "newinstance inode32 inode64 noswap userxattr volatile user_xattr nouser_xattr discard "
    "nodiscard barrier nobarrier norecovery allow_other default_permissions "
    # cgroup v1 controllers and flags, cgroup2 flags
    "cpu cpuacct cpuset memory devices freezer net_cls net_prio blkio perf_event pids hugetlb "
    "rdma misc all none noprefix xattr clone_children cpuset_v2_mode "
    "nsdelegate memory_recursiveprot memory_localevents favordynmods".split()
)
KNOWN_MOUNT_OPTIONS = frozenset(mount_option_names()) | EXTENSION_OPTIONS | FS_DATA_FLAGS

HOOK_STAGES = HOOK_KINDS
RLIMITS = frozenset(RLIMIT_TABLE)
CAPABILITIES = frozenset(CAP_NAMES)

# Sysctls that belong to the IPC namespace (runc validSysctlMap + fs.mqueue.*).
IPC_SYSCTL_PREFIXES = ("kernel.msg", "kernel.shm", "fs.mqueue.")
IPC_SYSCTLS = frozenset({"kernel.sem"})
UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})

# S_IFMT bits a device fileMode may carry, per device type (podman sends 0o20600 for a char dev).
DEVICE_IFMT = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}

CPU_PERIOD_MIN, CPU_PERIOD_MAX = 1000, 1000000  # cpu.cfs_period_us bounds (us)
CPU_QUOTA_MIN = 1000  # cpu.cfs_quota_us minimum (us); -1 means unlimited
BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX = 10, 1000


@dataclass(frozen=True)
class Host:
    """The host facts the checks depend on."""

    filesystems: frozenset[str]
    apparmor: bool
    selinux: bool

    @classmethod
    def probe(cls) -> Host:
        return cls(
            filesystems=_read_filesystems(),
            apparmor=os.path.isdir("/sys/kernel/security/apparmor"),
            selinux=os.path.exists("/sys/fs/selinux/enforce"),
        )


def _read_filesystems(path: str = "/proc/filesystems") -> frozenset[str]:
    """Filesystem types the kernel has registered (last column of /proc/filesystems)."""
    try:
        with open(path, encoding="ascii") as f:
            return frozenset(line.split()[-1] for line in f if line.strip())
    except OSError:
        return frozenset()


@dataclass
class Ctx:
    """What every check sees; ``namespaces`` (type -> path or None) is filled by check_namespaces."""

    doc: dict[str, Any]
    bundle: str
    warn: Callable[[str], None]
    host: Host
    namespaces: dict[str, str | None] = field(default_factory=dict)

    def section(self, *keys: str) -> dict[str, Any]:
        node: Any = self.doc
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    def new_ns(self, kind: str) -> bool:
        """True when the config asks for a fresh namespace of this kind (entry without path)."""
        return kind in self.namespaces and not self.namespaces[kind]


def fail(path: JPath | str, reason: str) -> NoReturn:
    where = path if isinstance(path, str) else json_path(list(path))
    raise ConfigError(f"{where}: {reason}")


def q(value: object) -> str:
    """Quote a value for a message the way JSON would write it."""
    return jsonio.dumps(value, ensure_ascii=False)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------------------------------------
# generic value checks


def _walk(node: object, path: JPath) -> Iterator[tuple[JPath, str]]:
    """Yield (path, string) for every string and object key in the document."""
    stack: list[tuple[object, JPath]] = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for key, child in value.items():
                yield where, key
                stack.append((child, (*where, key)))
        elif isinstance(value, list):
            stack.extend((child, (*where, i)) for i, child in enumerate(value))


def check_nul_bytes(ctx: Ctx) -> None:
    """No string anywhere may hold a NUL: C would silently cut it there."""
    for where, text in _walk(ctx.doc, ()):
        if "\0" in text:
            fail(where or "config", "contains a nul byte")


def _check_id(path: JPath, value: object) -> None:
    if type(value) is not int:
        fail(path, f"{q(value)} is not an integer id")
    if not 0 <= value <= ID_MAX:
        fail(path, f"{value} is out of range (0..{ID_MAX})")


def _check_abs(path: JPath, value: object, what: str = "path") -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        fail(path, f"{what} {q(value)} must be absolute")


def _check_env(path: JPath, env: object) -> None:
    for i, entry in enumerate(_list(env)):
        name, sep, _ = entry.partition("=")
        if not sep or not name:
            fail((*path, i), f"{q(entry)} is not of the form key=value")


# ---------------------------------------------------------------------------------------------
# root and process


def check_root(ctx: Ctx) -> None:
    root = ctx.doc.get("root")
    if not isinstance(root, dict):
        fail("root", "is required on linux")
    path = root.get("path")
    if not path:
        fail("root.path", "must not be empty")
    full = path if os.path.isabs(path) else os.path.join(ctx.bundle, path)
    try:
        st = os.lstat(full)
    except OSError as exc:
        fail("root.path", describe_oserror(exc))
    if stat.S_ISLNK(st.st_mode):
        fail("root.path", f"{full} is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        fail("root.path", f"{full} is not a directory")
    host_root = os.stat("/")
    if (st.st_dev, st.st_ino) == (host_root.st_dev, host_root.st_ino):
        fail("root.path", f"{full} is the host's root directory")


def check_process(ctx: Ctx) -> None:
    proc = ctx.doc.get("process")
    if not isinstance(proc, dict):
        fail("process", "is required")
    args = _list(proc.get("args"))
    if not args:
        fail("process.args", "must not be empty")
    if not args[0]:
        fail("process.args[0]", "must not be empty")
    _check_env(("process", "env"), proc.get("env"))
    _check_abs(("process", "cwd"), proc.get("cwd"), "cwd")
    oom = proc.get("oomScoreAdj")
    if oom is not None and (type(oom) is not int or not -1000 <= oom <= 1000):
        fail("process.oomScoreAdj", f"{q(oom)} is out of range (-1000..1000)")


def check_user(ctx: Ctx) -> None:
    user = ctx.section("process", "user")
    for key in ("uid", "gid"):
        if key in user:
            _check_id(("process", "user", key), user[key])
    gids = _list(user.get("additionalGids"))
    if len(gids) > NGROUPS_MAX:
        fail("process.user.additionalGids", f"more than {NGROUPS_MAX} groups")
    for i, gid in enumerate(gids):
        _check_id(("process", "user", "additionalGids", i), gid)


def check_rlimits(ctx: Ctx) -> None:
    seen: set[str] = set()
    for i, rlimit in enumerate(_list(ctx.section("process").get("rlimits"))):
        where: JPath = ("process", "rlimits", i)
        kind = rlimit.get("type")
        if kind not in RLIMITS:
            fail(where, f"unknown rlimit {q(kind)}")
        if kind in seen:
            fail(where, f"duplicate rlimit {q(kind)}")
        seen.add(kind)
        if rlimit["soft"] > rlimit["hard"]:
            fail(where, f"{kind} soft limit {rlimit['soft']} is above the hard limit {rlimit['hard']}")


def check_capabilities(ctx: Ctx) -> None:
    """Unknown names only warn: engines list capabilities newer than this kernel or runtime."""
    caps = ctx.section("process", "capabilities")
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        for i, name in enumerate(_list(caps.get(kind))):
            if name not in CAPABILITIES:
                where = json_path(["process", "capabilities", kind, i])
                ctx.warn(f"{where}: unknown capability {q(name)}")


def check_lsm_labels(ctx: Ctx) -> None:
    """Refused, never ignored: a label the runtime does not apply would leave the container
    unconfined while the caller believes it is confined."""
    proc = ctx.section("process")
    for where, value, lsm, enabled in (
            ("process.apparmorProfile", proc.get("apparmorProfile"), "apparmor", ctx.host.apparmor),
            ("process.selinuxLabel", proc.get("selinuxLabel"), "selinux", ctx.host.selinux),
            ("linux.mountLabel", ctx.section("linux").get("mountLabel"), "selinux", ctx.host.selinux)):
        if value:
            fail(where, f"{lsm} is not enabled on this host" if not enabled
                 else f"{lsm} labels are not supported by this runtime")


# ---------------------------------------------------------------------------------------------
# namespaces and id mappings


def namespace_type(path: str) -> int:
    """Return the CLONE_NEW* type of the namespace file at ``path``.

    Raises ``ValueError`` when the file is not a namespace (statfs(2) NSFS_MAGIC, then
    ioctl_ns(2) NS_GET_NSTYPE) and ``OSError`` when it cannot be opened.  The stat first keeps us
    from opening a FIFO or device by mistake: nsfs files are regular files.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a namespace file")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        buf = (ctypes.c_long * 16)()  # struct statfs (120 bytes on x86_64); f_type comes first
        libc_check(LIBC.fstatfs(fd, buf), "fstatfs", path)
        if buf[0] != NSFS_MAGIC:
            raise ValueError("not a namespace file")
        return fcntl.ioctl(fd, NS_GET_NSTYPE)
    finally:
        os.close(fd)


def _check_ns_path(where: JPath, kind: str, path: str) -> None:
    _check_abs(where, path)
    try:
        actual = namespace_type(path)
    except OSError as exc:
        fail(where, describe_oserror(exc))
    except ValueError:
        fail(where, f"{path} is not a namespace file")
    if actual != CLONE_FLAGS[kind]:
        names = [name for name, flag in CLONE_FLAGS.items() if flag == actual]
        found = names[0] if names else hex(actual)
        fail(where, f"{path} is a {found} namespace, not {kind}")


def check_namespaces(ctx: Ctx) -> None:
    for i, ns in enumerate(_list(ctx.section("linux").get("namespaces"))):
        kind = ns.get("type")
        if kind not in CLONE_FLAGS:
            fail(("linux", "namespaces", i, "type"), f"unknown namespace type {q(kind)}")
        if kind in ctx.namespaces:
            fail(("linux", "namespaces", i, "type"), f"duplicate namespace type {q(kind)}")
        path = ns.get("path") or None
        if path is not None:
            _check_ns_path(("linux", "namespaces", i, "path"), kind, path)
        ctx.namespaces[kind] = path


def _check_mapping_ranges(key: str, mappings: list[Any]) -> None:
    for i, m in enumerate(mappings):
        where: JPath = ("linux", key, i)
        if m["size"] < 1:
            fail(where, "size must be at least 1")
        for end in ("containerID", "hostID"):
            if m[end] + m["size"] > 1 << 32:
                fail(where, f"{end} {m[end]} + size {m['size']} overflows the 32-bit id space")


def check_id_mappings(ctx: Ctx) -> None:
    linux = ctx.section("linux")
    uid_maps, gid_maps = _list(linux.get("uidMappings")), _list(linux.get("gidMappings"))
    if "user" not in ctx.namespaces:
        if uid_maps or gid_maps:
            fail("linux.uidMappings", "id mappings given without a user namespace")
        return
    if ctx.new_ns("user"):
        if not uid_maps:
            fail("linux.uidMappings", "a new user namespace needs uid mappings")
        if not gid_maps:
            fail("linux.gidMappings", "a new user namespace needs gid mappings")
    _check_mapping_ranges("uidMappings", uid_maps)
    _check_mapping_ranges("gidMappings", gid_maps)


def check_uts(ctx: Ctx) -> None:
    """runc: a hostname/domainname needs a uts entry (new or joined) in linux.namespaces."""
    for key in ("hostname", "domainname"):
        value = ctx.doc.get(key)
        if not value:
            continue
        if "uts" not in ctx.namespaces:
            fail(key, f"cannot set the {key} without a private uts namespace")
        if len(value.encode()) > HOST_NAME_MAX:
            fail(key, f"longer than {HOST_NAME_MAX} bytes")


def check_time_offsets(ctx: Ctx) -> None:
    if ctx.section("linux").get("timeOffsets") and not ctx.new_ns("time"):
        fail("linux.timeOffsets", "time offsets need a new time namespace")


# ---------------------------------------------------------------------------------------------
# mounts and paths


def _is_bind(mount: dict[str, Any]) -> bool:
    options = _list(mount.get("options"))
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def _check_mount_type(where: str, mount: dict[str, Any], host: Host) -> None:
    mtype = mount.get("type") or ""
    if mtype == "bind":
        return
    if mtype in ("", "none"):
        if not _is_bind(mount):
            fail(where, "a mount type is required unless the mount is a bind mount")
        return
    if mtype in host.filesystems:
        return
    if mtype.startswith("fuse.") and "fuse" in host.filesystems:
        return
    fail(where, f"unknown filesystem type {q(mtype)}")


def _check_mount_options(where: str, mount: dict[str, Any]) -> None:
    for option in _list(mount.get("options")):
        key, sep, _ = option.partition("=")
        if sep:
            # key=value data goes to the filesystem, which judges it at mount time.
            if not key:
                fail(where, f"mount option {q(option)} has an empty key")
            continue
        if option not in KNOWN_MOUNT_OPTIONS:
            fail(where, f"unknown mount option {q(option)}")


def _check_bind_source(where: str, mount: dict[str, Any], bundle: str) -> None:
    source = mount.get("source")
    if not source:
        fail(where, "a bind mount needs a source")
    # runc resolves a relative bind source against the bundle (its working directory).
    full = source if os.path.isabs(source) else os.path.join(bundle, source)
    try:
        os.stat(full)
    except OSError as exc:
        fail(where, f"bind source {describe_oserror(exc)}")


def check_mounts(ctx: Ctx) -> None:
    for i, mount in enumerate(_list(ctx.doc.get("mounts"))):
        dest = mount.get("destination")
        where = f"mounts[{i}] ({dest})"
        _check_abs(("mounts", i, "destination"), dest, "destination")
        if os.path.normpath(dest) == "/":
            fail(where, "cannot mount over the container's root directory")
        _check_mount_type(where, mount, ctx.host)
        _check_mount_options(where, mount)
        if _is_bind(mount):
            _check_bind_source(where, mount, ctx.bundle)


def check_linux_paths(ctx: Ctx) -> None:
    linux = ctx.section("linux")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(_list(linux.get(key))):
            _check_abs(("linux", key, i), path)


def check_hooks(ctx: Ctx) -> None:
    hooks = ctx.section("hooks")
    for stage in HOOK_STAGES:
        for i, hook in enumerate(_list(hooks.get(stage))):
            where: JPath = ("hooks", stage, i)
            _check_abs((*where, "path"), hook.get("path"))
            _check_env((*where, "env"), hook.get("env"))
            timeout = hook.get("timeout")
            if timeout is not None and (type(timeout) is not int or timeout <= 0):
                fail((*where, "timeout"), f"{q(timeout)} must be positive (seconds)")


# ---------------------------------------------------------------------------------------------
# devices and resources


def check_devices(ctx: Ctx) -> None:
    for i, dev in enumerate(_list(ctx.section("linux").get("devices"))):
        where: JPath = ("linux", "devices", i)
        kind = dev.get("type")
        _check_abs((*where, "path"), dev.get("path"))
        mode = dev.get("fileMode")
        if mode is not None and stat.S_IFMT(mode) not in (0, DEVICE_IFMT[kind]):
            fail((*where, "fileMode"), f"file-type bits {oct(stat.S_IFMT(mode))} do not match type {q(kind)}")
        if kind != "p":
            for key, bits in (("major", 12), ("minor", 20)):
                if key not in dev:
                    fail(where, f"{key} is required for a type {q(kind)} device")
                if not 0 <= dev[key] < 1 << bits:
                    fail((*where, key), f"{dev[key]} is out of range")
        for key in ("uid", "gid"):
            if key in dev:
                _check_id((*where, key), dev[key])


def check_device_cgroup(ctx: Ctx) -> None:
    for i, rule in enumerate(_list(ctx.section("linux", "resources").get("devices"))):
        access = rule.get("access")
        if not isinstance(access, str):
            continue
        where: JPath = ("linux", "resources", "devices", i, "access")
        # runc refuses an empty access ("device access ... cannot be empty") but reads any other
        # string as a set of r, w, m, ignoring the rest; so do we, with a warning.
        if not access:
            fail(where, "cannot be empty")
        kept, unknown = split_access(access)
        if unknown:
            ctx.warn(access_warning(json_path(where), unknown, kept))


def check_memory(ctx: Ctx) -> None:
    memory = ctx.section("linux", "resources", "memory")
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        value = memory.get(key)
        if value is not None and value < -1:
            fail(("linux", "resources", "memory", key), f"{value} is below -1")
    swappiness = memory.get("swappiness")
    if swappiness is not None and swappiness > 100:
        fail("linux.resources.memory.swappiness", f"{swappiness} is out of range (0..100)")


def check_cpu(ctx: Ctx) -> None:
    """cpu.cfs_period_us / cfs_quota_us bounds; 0 means unset, as in runc."""
    cpu = ctx.section("linux", "resources", "cpu")
    period = cpu.get("period")
    if period and not CPU_PERIOD_MIN <= period <= CPU_PERIOD_MAX:
        fail("linux.resources.cpu.period", f"{period} is out of range ({CPU_PERIOD_MIN}..{CPU_PERIOD_MAX})")
    quota = cpu.get("quota")
    if quota and quota != -1 and quota < CPU_QUOTA_MIN:
        fail("linux.resources.cpu.quota", f"{quota} must be -1 or at least {CPU_QUOTA_MIN}")


def check_block_io(ctx: Ctx) -> None:
    base: JPath = ("linux", "resources", "blockIO")
    blkio = ctx.section(*base)
    keys = ("weight", "leafWeight")
    items: list[tuple[JPath, Any]] = [((*base, k), blkio.get(k)) for k in keys]
    for i, dev in enumerate(_list(blkio.get("weightDevice"))):
        items += [((*base, "weightDevice", i, k), dev.get(k)) for k in keys]
    for where, weight in items:
        if weight and not BLKIO_WEIGHT_MIN <= weight <= BLKIO_WEIGHT_MAX:
            fail(where, f"{weight} is out of range ({BLKIO_WEIGHT_MIN}..{BLKIO_WEIGHT_MAX})")


def check_unified(ctx: Ctx) -> None:
    """linux.resources.unified keys name files in the cgroup directory: plain names only."""
    for key in ctx.section("linux", "resources", "unified"):
        if "/" in key or key in (".", ".."):
            fail(("linux", "resources", "unified", key), "must be a cgroup file name")


def check_cgroups_path(ctx: Ctx) -> None:
    path = ctx.section("linux").get("cgroupsPath")
    if path and ".." in path.split("/"):
        fail("linux.cgroupsPath", f"{q(path)} must not contain '..' components")


# ---------------------------------------------------------------------------------------------
# sysctls (runc's validator: only namespaced keys, and only when that namespace is private)


def _same_as_own_netns(path: str) -> bool:
    st, own = os.stat(path), os.stat("/proc/self/ns/net")
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _check_sysctl(ctx: Ctx, key: str) -> None:
    where: JPath = ("linux", "sysctl", key)
    if "/" in key or "" in key.split("."):
        fail(where, "is not a valid sysctl name")
    if key in IPC_SYSCTLS or key.startswith(IPC_SYSCTL_PREFIXES):
        if "ipc" not in ctx.namespaces:
            fail(where, "not allowed in the host's ipc namespace")
        return
    if key.startswith("net."):
        if "network" not in ctx.namespaces:
            fail(where, "not allowed in the host's network namespace")
        path = ctx.namespaces["network"]
        if path and _same_as_own_netns(path):
            fail(where, "not allowed in the host's network namespace")
        return
    if key in UTS_SYSCTLS:
        if not ctx.new_ns("uts"):
            fail(where, "needs a new uts namespace")
        if key == "kernel.hostname" and ctx.doc.get("hostname"):
            fail(where, "conflicts with the hostname field")
        return
    fail(where, "is not in a separate kernel namespace")


def check_sysctls(ctx: Ctx) -> None:
    for key in ctx.section("linux", "sysctl"):
        _check_sysctl(ctx, key)


CHECKS: tuple[Callable[[Ctx], None], ...] = (
    check_nul_bytes,
    check_root,
    check_process,
    check_user,
    check_rlimits,
    check_capabilities,
    check_lsm_labels,
    check_namespaces,
    check_id_mappings,
    check_uts,
    check_time_offsets,
    check_mounts,
    check_linux_paths,
    check_hooks,
    check_devices,
    check_device_cgroup,
    check_memory,
    check_cpu,
    check_block_io,
    check_unified,
    check_cgroups_path,
    check_sysctls,
)


def check(
    doc: dict[str, Any],
    bundle: str,
    warn: Callable[[str], None] | None = None,
    host: Host | None = None,
) -> None:
    """Raise ``ConfigError`` for the first semantic problem in a schema-valid config.

    ``bundle`` anchors relative ``root.path`` and bind sources; ``warn`` receives one-line
    warnings (unknown capabilities); ``host`` defaults to probing this machine.
    """
    ctx = Ctx(doc, bundle, warn or (lambda _msg: None), host or Host.probe())
    for step in CHECKS:
        step(ctx)


# What `exec --process FILE` is held to: the process checks of config.json, on its own.
PROCESS_CHECKS = (check_nul_bytes, check_process, check_user, check_rlimits, check_capabilities,
                  check_lsm_labels)


def check_process_object(proc: dict[str, Any], warn: Callable[[str], None] | None = None,
                         host: Host | None = None) -> None:
    """Raise ``ConfigError`` for the first semantic problem in a schema-valid process object."""
    ctx = Ctx({"process": proc}, "", warn or (lambda _msg: None), host or Host.probe())
    for step in PROCESS_CHECKS:
        step(ctx)
