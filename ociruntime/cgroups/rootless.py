"""Rootless cgroups: keep only the hierarchies we may write, as runc's rootless cgroup manager.

runc (cgroupfs driver, ``Rootless`` set) tries to create and join the cgroup in every hierarchy
and, when that fails for lack of permission and ``cgroupsPath`` was not given, drops the
hierarchy; a resource for a dropped controller then fails with "cannot set X limit: container
could not join or create cgroup" (on pure v2 runc's fs2 says "rootless needs no limits + no
cgrouppath when no permission is granted for cgroups: mkdir ...: permission denied"), and device
rules are not expected to work at all.  Here the
same decision is made *before* anything is created (create must record what it is about to make,
ARCHITECTURE.md "Crash safety"), from the kernel's own permission check (faccessat with the
effective ids): a directory we may create below, a cgroup.procs we may write.  On a delegated
cgroup v2 subtree (a systemd user session) everything stays; on a v1 host nothing does.
"""

from __future__ import annotations

import os

from ociruntime.cgroups.base import UNIFIED, Manager
from ociruntime.cgroups.common import as_dict, is_set
from ociruntime.errors import ConfigError

# Annotations only (postponed).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# (resource key, part of it or None for all, v1 controller), the controllers FsManager writes.
_RESOURCE_CONTROLLERS = (
    ("memory", None, "memory"),
    ("pids", None, "pids"),
    ("blockIO", None, "blkio"),
    ("hugepageLimits", None, "hugetlb"),
    ("rdma", None, "rdma"),
    ("cpu", ("cpus", "mems"), "cpuset"),
    ("cpu", ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "idle"), "cpu"),
    ("network", ("classID",), "net_cls"),
    ("network", ("priorities",), "net_prio"),
    ("unified", None, UNIFIED),
)


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def may_use(mountpoint: str, cgroup_dir: str) -> bool:
    """Whether we may create ``cgroup_dir`` (or use it, if it exists) and move a process into it."""
    if os.path.isdir(cgroup_dir):
        procs = os.path.join(cgroup_dir, "cgroup.procs")
        return os.access(procs, os.W_OK, effective_ids=os.access in os.supports_effective_ids)
    parent = os.path.dirname(cgroup_dir)
    while len(parent) > len(mountpoint) and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return os.path.isdir(parent) and _writable(parent)


def requested_controllers(resources: dict[str, Any] | None, v2: bool) -> list[str]:
    """The controllers ``linux.resources`` needs, devices excepted (never expected rootless)."""
    r = as_dict(resources or {}, "linux.resources")
    out: list[str] = []
    for key, part, controller in _RESOURCE_CONTROLLERS:
        value = r.get(key)
        if part is not None:
            value = {k: v for k, v in as_dict(value, f"linux.resources.{key}").items() if k in part}
        if is_set(value):
            name = UNIFIED if v2 else controller
            if name not in out:
                out.append(name)
    return out


def prune(manager: Manager, resources: dict[str, Any] | None, explicit_path: bool) -> dict[str, str]:
    """Drop the hierarchies we may not use from ``manager`` (in place); return their mounts.

    With an explicit ``cgroupsPath`` nothing is dropped: the mkdir then fails with its own
    permission error, as runc's does.  A resource whose controller is dropped (or absent) is a
    ConfigError with runc's wording."""
    dropped: dict[str, str] = {}
    dropped_paths: dict[str, str] = {}
    if not explicit_path:
        for name in sorted(manager.paths):
            if not may_use(manager.mounts[name], manager.paths[name]):
                dropped[name] = manager.mounts[name]
        for name in dropped:
            dropped_paths[name] = manager.paths.pop(name)
            del manager.mounts[name]
    for name in requested_controllers(resources, manager.mode == "v2"):
        if name in manager.paths:
            continue
        if name == UNIFIED and manager.mode == "v2":
            # runc's fs2 wording (its mkdir failed where ours was not tried).
            where = "no cgroup"
            if name in dropped_paths:
                where = f"mkdir {dropped_paths[name]}: permission denied"
            raise ConfigError("rootless needs no limits + no cgrouppath when no permission is granted for "
                              f"cgroups: {where}")
        what = "unified" if name == UNIFIED else name
        raise ConfigError(f"cannot set {what} limit: container could not join or create cgroup "
                          "(rootless: no write access to it)")
    return dropped


def own_dirs(dropped: dict[str, str]) -> dict[str, str]:
    """The runtime's own cgroup directory in each dropped hierarchy (``{name: mountpoint}``):
    where the container's processes stay, and what its /sys/fs/cgroup shows, read-only, for
    those hierarchies (runc binds the init's own cgroups the same way)."""
    from ociruntime.cgroups.layout import own_cgroups

    own = own_cgroups()
    out = {}
    for name, mountpoint in dropped.items():
        if name in own:
            d = os.path.join(mountpoint, own[name].lstrip("/"))
            if os.path.isdir(d):
                out[name] = d
    return out
