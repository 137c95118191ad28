"""Rootless operation: the rules that change when the runtime is not the host's root.

Two different questions, as in runc:

* **rootless EUID** (``os.geteuid() != 0``): the caller is an unprivileged user.  The config
  must then create (or join) a user namespace with mappings, the maps of a new one can only be
  written directly when they map the caller's own uid/gid once (after ``setgroups`` = ``deny``
  for the gid map), anything else goes through the setuid helpers ``newuidmap``/``newgidmap``
  (package ``uidmap``), which allow exactly the caller's ranges in /etc/subuid and /etc/subgid.
* **rootless cgroups** (``--rootless``, ``auto`` by default): cgroups are used only where we may
  write them (a delegated subtree); elsewhere they are skipped, and a config asking for limits
  there fails (cgroups/rootless.py).  ``auto`` means yes for an unprivileged caller and for uid 0
  in a user namespace (rootless podman runs us so), no for the host's root (runc's
  ``shouldUseRootlessCgroupManager`` with the cgroupfs driver).

Everything here is pure apart from the few reads named as such, so tests/test_rootless.py covers it
without root.  Import-light: ``create`` and the CLI entry use it.
"""

from __future__ import annotations

import errno
import os

from ociruntime.errors import ConfigError, OCIError, UsageError

# Annotations only (postponed): `typing` stays unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# The uid_map of the initial user namespace: every id, mapped to itself.
_INITIAL_MAP = "0 0 4294967295"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")


def parse_bool_or_auto(value: str) -> bool | None:
    """``--rootless``: None for ``auto`` (or empty), else Go's strconv.ParseBool (runc's
    parseBoolOrAuto); anything else is a usage error."""
    if value == "" or value.lower() == "auto":
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f'invalid --rootless value "{value}": use true, false or auto')


def in_user_namespace(uid_map: str | None = None) -> bool:
    """Whether we run in a user namespace other than the initial one (moby/sys userns's rule:
    the initial namespace maps every id to itself).  Reads /proc/self/uid_map unless given."""
    if uid_map is None:
        # os-level read: `open()` in text mode may import an encoding module on hot commands.
        try:
            fd = os.open("/proc/self/uid_map", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            uid_map = os.read(fd, 4096).decode("ascii", "replace")
        finally:
            os.close(fd)
    return " ".join(uid_map.split()) != _INITIAL_MAP


def honour_xdg_runtime_dir(euid: int, in_userns: bool, env: Mapping[str, str]) -> bool:
    """runc's shouldHonorXDGRuntimeDir: not for the host's root (backward compatibility), yes
    for anyone else; uid 0 in a user namespace only when $USER is not root (rootless podman)."""
    if euid != 0:
        return True
    if not in_userns:
        return False
    return env.get("USER", "") != "root"


def default_root(default: str, euid: int, in_userns: bool, env: Mapping[str, str]) -> tuple[str, bool]:
    """(state root, whether it is the XDG one): ``$XDG_RUNTIME_DIR/ociruntime`` where runc would
    use ``$XDG_RUNTIME_DIR/runc``, else ``default`` (runc falls back to /run/runc, which an
    unprivileged user cannot create: the store reports that with a hint)."""
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and honour_xdg_runtime_dir(euid, in_userns, env):
        return os.path.join(xdg, "ociruntime"), True
    return default, False


def prepare_xdg_root(root: str) -> None:
    """Create the XDG state root 0700 with the sticky bit: XDG's rule against the session
    cleaner pruning it (runc does the same)."""
    try:
        os.makedirs(root, 0o700, exist_ok=True)
        os.chmod(root, 0o1700)
    except OSError as e:
        raise OCIError(f"state root {root}: {os.strerror(e.errno or 0).lower()} "
                       "(the path in $XDG_RUNTIME_DIR must be writable by the user)") from None


def rootless_cgroups(flag: str, euid: int, in_userns: bool) -> bool:
    """runc's shouldUseRootlessCgroupManager for the cgroupfs driver: the flag when it is
    true/false; with auto, yes unless we are the real root of the initial user namespace."""
    explicit = parse_bool_or_auto(flag)
    if explicit is not None:
        return explicit
    return euid != 0 or in_userns


# ---- id mappings ---------------------------------------------------------------------------------

def parse_subid(text: str, user: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges /etc/subuid or /etc/subgid grants ``user`` (by name or id)."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            out.append((start, count))
    return out


def _mappings(maps: object, what: str) -> list[tuple[int, int, int]]:
    out = []
    for i, m in enumerate(maps or []):  # type: ignore[attr-defined]
        try:
            out.append((int(m["containerID"]), int(m["hostID"]), int(m["size"])))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"linux.{what}[{i}]: containerID, hostID and size are required") from None
    return out


def is_self_map(maps: list[tuple[int, int, int]], own: int) -> bool:
    """The only map an unprivileged process may write itself: one id, its own (user_namespaces(7))."""
    return len(maps) == 1 and maps[0][1] == own and maps[0][2] == 1


def check_host_ranges(maps: list[tuple[int, int, int]], own: int, subids: list[tuple[int, int]],
                      what: str, file: str) -> None:
    """Every host range must be the caller's own id or lie inside one of its subordinate ranges
    (what newuidmap/newgidmap enforce; checked first for one clear line and no side effect)."""
    for container_id, host, size in maps:
        if size <= 0:
            raise ConfigError(f"linux.{what}: mapping {container_id} {host} {size}: size must be positive")
        if host == own and size == 1:
            continue
        if any(start <= host and host + size <= start + count for start, count in subids):
            continue
        raise ConfigError(f"linux.{what}: host ids {host}-{host + size - 1} are neither yours ({own}) "
                          f"nor in your ranges in {file}")


def check_config(config: dict, euid: int, egid: int) -> None:
    """runc's rootlessEUIDCheck (configs/validate/rootless.go), for an unprivileged caller:
    a user namespace, mappings when it is a new one, and uid=/gid= mount options that are
    mapped.  Raises ConfigError."""
    linux = config.get("linux") or {}
    userns = [ns for ns in linux.get("namespaces") or [] if ns.get("type") == "user"]
    if not userns:
        raise ConfigError("rootless container requires user namespaces")
    if userns[0].get("path"):
        return
    uids = _mappings(linux.get("uidMappings"), "uidMappings")
    gids = _mappings(linux.get("gidMappings"), "gidMappings")
    if not uids:
        raise ConfigError("rootless containers requires at least one UID mapping")
    if not gids:
        raise ConfigError("rootless containers requires at least one GID mapping")
    for mount in config.get("mounts") or []:
        for opt in mount.get("options") or []:
            for key, maps in (("uid=", uids), ("gid=", gids)):
                if not isinstance(opt, str) or not opt.startswith(key):
                    continue
                try:
                    value = int(opt[4:])
                except ValueError:
                    continue  # not an id option of ours: the filesystem judges it
                if not any(c <= value < c + s for c, _h, s in maps):
                    raise ConfigError(f"cannot specify {opt} mount option for rootless container: "
                                      f"{key[:-1]} {value} is not mapped (mount {mount.get('destination')})")
    proc = config.get("process") or {}
    if (proc.get("user") or {}).get("additionalGids") and is_self_map(gids, egid):
        raise ConfigError("process.user.additionalGids: a rootless container that maps only your own "
                          "gid cannot set supplementary groups (setgroups is denied in its user namespace)")


def find_helper(name: str) -> str | None:
    """The absolute path of newuidmap/newgidmap, looked up in the usual system directories only
    (never in the caller's $PATH: it is a setuid program that decides what we may map)."""
    for d in _HELPER_DIRS:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


class MapPlan:
    """How the maps of a new user namespace get written: directly, or by the helpers."""

    __slots__ = ("deny_setgroups", "gid_helper", "uid_helper")

    def __init__(self, uid_helper: str | None = None, gid_helper: str | None = None,
                 deny_setgroups: bool = False) -> None:
        self.uid_helper = uid_helper
        self.gid_helper = gid_helper
        self.deny_setgroups = deny_setgroups


def plan_maps(linux: dict, euid: int, egid: int, user: str, subuid: str, subgid: str) -> MapPlan:
    """For an unprivileged caller: which maps need newuidmap/newgidmap, checked against the
    caller's /etc/subuid and /etc/subgid text (given, so tests need no files)."""
    uids = _mappings(linux.get("uidMappings"), "uidMappings")
    gids = _mappings(linux.get("gidMappings"), "gidMappings")
    plan = MapPlan()
    if not is_self_map(uids, euid):
        plan.uid_helper = _helper_for(uids, euid, parse_subid(subuid, user, euid), "uid")
    if not is_self_map(gids, egid):
        plan.gid_helper = _helper_for(gids, egid, parse_subid(subgid, user, egid), "gid")
    else:
        # The kernel lets an unprivileged process write its own gid only once setgroups(2) is
        # denied in the namespace (user_namespaces(7), CVE-2014-8989); runc does the same.
        plan.deny_setgroups = True
    return plan


def _helper_for(maps: list[tuple[int, int, int]], own: int, subids: list[tuple[int, int]], kind: str) -> str:
    """The helper that may write ``maps`` (new{kind}map), once they are checked against the
    caller's /etc/sub{kind} ranges."""
    check_host_ranges(maps, own, subids, f"{kind}Mappings", f"/etc/sub{kind}")
    helper = find_helper(f"new{kind}map")
    if helper is None:
        raise ConfigError(f"linux.{kind}Mappings: mapping more than your own {kind} needs new{kind}map "
                          "(package uidmap), which is not installed")
    return helper


def read_text(path: str) -> str:
    """A small system file's text, or "" when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            return ""
        raise


def helper_argv(helper: str, pid: int, maps: bytes) -> list[str]:
    """``newuidmap PID ID HOSTID SIZE ...`` from the text format of /proc/PID/uid_map."""
    return [helper, str(pid), *maps.decode().split()]
