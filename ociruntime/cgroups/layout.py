"""Where the cgroup hierarchies are mounted and where a container's cgroup goes in each.

The layout is read from /proc/self/mountinfo (proc(5)), never assumed: pure v1 (one ``cgroup``
mount per hierarchy), pure v2 (one ``cgroup2`` mount) or hybrid (v1 controllers plus a
controller-less ``cgroup2`` mount, usually /sys/fs/cgroup/unified).

Path resolution follows runc's cgroupfs driver (libcontainer/cgroups/fs/paths.go and
fs2/defaultpath.go, with specconv's ``CreateCgroupConfig``):
- no cgroupsPath: the path is the container id, *relative*;
- an absolute path is joined to each hierarchy's mount point;
- a relative path is joined to the runtime's own cgroup in that hierarchy (taken from
  /proc/self/cgroup, made relative to the mount's root); on pure v2 to the *parent* of the own
  cgroup, because the own cgroup already holds processes and the no-internal-process rule would
  forbid enabling controllers for a child of it.
Unlike runc, which cleans ``..`` away lexically, a ``..`` component is rejected outright.
"""

from __future__ import annotations

import os

from ociruntime.cgroups.base import UNIFIED
from ociruntime.errors import ConfigError, OCIError
from ociruntime.linux.mountinfo import unescape
from ociruntime.record import dataclass, field

# Super options of a v1 cgroup mount that are not controller names.
_NON_CONTROLLER_OPTS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "nofavor"}
)


def _systemd_form(path: str) -> bool:
    """Whether ``path`` is in the systemd driver's "slice:prefix:name" form: what
    ``re.match(r"^[^:/]*:[^:/]*:[^:/]+$", path)`` tells, without `re` on create's path."""
    parts = path.split(":")
    return len(parts) == 3 and "/" not in path and parts[2] != ""


@dataclass(frozen=True)
class Mount:
    """One mounted hierarchy: mount point, the hierarchy path shown at it, its controllers."""

    mountpoint: str
    root: str = "/"
    controllers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """The cgroup layout: ``mode`` is "v1", "v2" or "hybrid"."""

    mode: str
    v1: dict[str, Mount] = field(default_factory=dict)  # controller (or "name=x") -> mount
    unified: Mount | None = None

    def under(self, root: str) -> Layout:
        """The same layout restricted to mounts at or below ``root``."""
        prefix = root.rstrip("/") + "/"

        def inside(m: Mount) -> bool:
            return m.mountpoint == root.rstrip("/") or m.mountpoint.startswith(prefix)

        v1 = {k: m for k, m in self.v1.items() if inside(m)}
        unified = self.unified if self.unified and inside(self.unified) else None
        return Layout(_mode(bool(v1), unified is not None), v1, unified)


def _mode(has_v1: bool, has_v2: bool) -> str:
    if has_v1 and has_v2:
        return "hybrid"
    if has_v2:
        return "v2"
    if has_v1:
        return "v1"
    return "none"


def _is_controller(opt: str) -> bool:
    # name=<x> is a named hierarchy (name=systemd); other "k=v" options are settings.
    return opt not in _NON_CONTROLLER_OPTS and ("=" not in opt or opt.startswith("name="))


def _read_mountinfo() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def detect_layout(mountinfo: str | None = None) -> Layout:
    """Parse mountinfo text (default: /proc/self/mountinfo) into a :class:`Layout`.

    The first mount of each hierarchy wins; a v1 mount whose super options name no controller
    is ignored.  Hybrid means a cgroup2 mount next to at least one v1 mount.
    """
    text = _read_mountinfo() if mountinfo is None else mountinfo
    v1: dict[str, Mount] = {}
    unified: Mount | None = None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 4:
            continue
        fstype, superopts = fields[sep + 1], fields[sep + 3]
        root, mountpoint = unescape(fields[3]), unescape(fields[4])
        if fstype == "cgroup2" and unified is None:
            unified = Mount(mountpoint, root)
        elif fstype == "cgroup":
            ctrls = tuple(o for o in superopts.split(",") if _is_controller(o))
            if ctrls and not any(c in v1 for c in ctrls):
                mount = Mount(mountpoint, root, ctrls)
                v1.update(dict.fromkeys(ctrls, mount))
    return Layout(_mode(bool(v1), unified is not None), v1, unified)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/cgroup into ``{controller or "name=x": path, "unified": path}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if ctrls == "":
            out[UNIFIED] = path
        else:
            out.update(dict.fromkeys(ctrls.split(","), path))
    return out


def own_cgroups() -> dict[str, str]:
    """The runtime process's own cgroup in every hierarchy."""
    with open("/proc/self/cgroup", encoding="utf-8", errors="surrogateescape") as f:
        return parse_proc_cgroup(f.read())


def check_cgroups_path(cgroups_path: str | None, container_id: str) -> str:
    """Validate ``linux.cgroupsPath`` for the cgroupfs driver and return the inner path
    (absolute or relative, clean).  No path means the container id, relative, as runc does.
    """
    raw = cgroups_path if cgroups_path else container_id
    what = "linux.cgroupsPath" if cgroups_path else "container id used as cgroup name"
    if "\0" in raw:
        raise ConfigError(f"{what} {raw!r}: contains a NUL byte")
    if cgroups_path and _systemd_form(raw):
        raise ConfigError(
            f'linux.cgroupsPath "{raw}" is in the systemd "slice:prefix:name" form, '
            "which needs the systemd cgroup driver (--systemd-cgroup); use a plain path with cgroupfs"
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f'{what} "{raw}": ".." components are not allowed')
    if not parts:
        raise ConfigError(f'{what} "{raw}": resolves to the hierarchy root')
    inner = "/".join(parts)
    return "/" + inner if raw.startswith("/") else inner


def _relative_to_mount(own: str, mount: Mount) -> str:
    # /proc/self/cgroup shows paths from the hierarchy root; the mount may expose a subtree
    # (mountinfo field 4), e.g. inside a container without a cgroup namespace.
    root = mount.root.rstrip("/")
    if root and (own == root or own.startswith(root + "/")):
        own = own[len(root) :]
    return own.lstrip("/")


def resolve_paths(inner: str, layout: Layout, own: dict[str, str] | None = None) -> dict[str, str]:
    """Map every hierarchy name to the container's cgroup directory in it.

    ``own`` (the runtime's /proc/self/cgroup, parsed) is only read for relative paths.
    """
    if layout.mode == "none":
        raise OCIError("no cgroup filesystem is mounted")
    if not inner.startswith("/") and own is None:
        own = own_cgroups()
    paths: dict[str, str] = {}
    mounts: list[tuple[str, Mount]] = list(layout.v1.items())
    if layout.unified is not None:
        mounts.append((UNIFIED, layout.unified))
    for name, mount in mounts:
        if inner.startswith("/"):
            paths[name] = os.path.join(mount.mountpoint, inner.lstrip("/"))
            continue
        assert own is not None
        if name not in own:
            raise OCIError(f"/proc/self/cgroup: no entry for the {name} hierarchy")
        base = _relative_to_mount(own[name], mount)
        if name == UNIFIED and layout.mode == "v2":
            base = os.path.dirname(base)
        paths[name] = os.path.join(mount.mountpoint, base, inner)
    return paths


def container_view(paths: dict[str, str], mounts: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The container's /sys/fs/cgroup on a v1 or hybrid host, as runc builds it: one directory
    per host hierarchy mount, named like the host's directory (``cpu,cpuacct``, ``systemd`` for
    name=systemd, ``unified``), because tools inside (systemd, docker-in-docker) look for those
    names.  Returns ``{dir name: host cgroup dir}`` and ``{dir name: v1 mount data}``."""
    dirs: dict[str, str] = {}
    names: dict[str, list[str]] = {}
    for name, path in paths.items():
        if name == UNIFIED:
            dirs[UNIFIED] = path
            continue
        mountpoint = mounts.get(name, name).rstrip("/")
        d = os.path.basename(mountpoint) or name
        dirs[d] = path
        names.setdefault(d, []).append(name)
    data = {}
    for d, hier in names.items():
        hier.sort()
        # A named hierarchy without controllers is selected by "none,name=x".
        data[d] = ",".join(hier if any("=" not in h for h in hier) else ["none", *hier])
    return dirs, data
