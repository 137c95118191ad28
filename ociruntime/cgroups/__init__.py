"""Container cgroups: one :class:`Manager` interface, chosen by the one factory :func:`new_manager`.

Import-light on purpose (stdlib only, no work at import): ``state``/``kill``/``delete`` rebuild
a manager with :func:`manager_from_state` and must start fast.

Typical use by the lifecycle code::

    mgr = new_manager(spec_linux.get("cgroupsPath"), container_id)
    mgr.create(); mgr.set_resources(resources); mgr.join(init_pid)
    state["cgroup"] = mgr.to_state()          # after create(): records the dirs it made
    ...
    manager_from_state(state["cgroup"]).destroy()
"""

from __future__ import annotations

import os

from ociruntime.cgroups.base import Manager
from ociruntime.cgroups.manager import FsManager, from_state
from ociruntime.errors import OCIError

# Annotations only (postponed by `from __future__ import annotations`): `typing` and
# `collections.abc` cost ~4 ms to import on state/kill/delete, which rebuild a manager.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ociruntime.cgroups.layout import Layout, Mount


def __getattr__(name: str) -> Any:
    # Layout detection (and its dataclasses) is needed by create only, not by the frequent
    # commands that rebuild a manager from state.
    if name in ("Layout", "Mount"):
        from ociruntime.cgroups import layout

        return getattr(layout, name)
    raise AttributeError(name)


def detect_layout(mountinfo: str | None = None) -> Layout:
    from ociruntime.cgroups.layout import detect_layout as detect

    return detect(mountinfo)

__all__ = ["Layout", "Manager", "Mount", "detect_layout", "manager_from_state", "new_manager"]


def new_manager(
    cgroups_path: str | None,
    container_id: str,
    *,
    systemd: bool = False,
    root: str = "/sys/fs/cgroup",
    layout: Layout | None = None,
    own_cgroups: dict[str, str] | None = None,
    rootless: bool = False,
) -> Manager:
    """The manager for ``linux.cgroupsPath`` (None/empty: the container id, like runc).

    ``layout`` defaults to the mounts found in /proc/self/mountinfo at or below ``root``;
    ``own_cgroups`` (parsed /proc/self/cgroup) is read only for relative paths.  Both exist so
    tests can describe a fake hierarchy tree under a temporary ``root``.
    ``systemd=True`` selects the systemd driver (cgroups/systemd.py: a transient scope), in the
    caller's own (user) manager with ``rootless=True``.
    Raises ConfigError for an invalid path, OCIError when systemd is asked for but not running.
    """
    from ociruntime.cgroups.layout import check_cgroups_path, resolve_paths

    found = (layout if layout is not None else detect_layout()).under(root)
    if found.mode == "none":
        raise OCIError(f"no cgroup filesystem is mounted at or below {root}")
    if systemd:
        from ociruntime.cgroups.systemd import new_systemd_manager

        return new_systemd_manager(cgroups_path, container_id, found, user=rootless)
    inner = check_cgroups_path(cgroups_path, container_id)
    paths = resolve_paths(inner, found, own_cgroups)
    mounts = {name: m.mountpoint for name, m in found.v1.items()}
    if found.unified is not None:
        mounts["unified"] = found.unified.mountpoint
    for name, path in paths.items():
        # Belt and braces after the ".." check: the result must stay inside its hierarchy.
        if not os.path.normpath(path).startswith(mounts[name].rstrip("/") + "/"):
            raise OCIError(f"cgroup path {path} escapes its hierarchy {mounts[name]}")
    return FsManager(found.mode, paths, mounts)


def manager_from_state(d: dict[str, Any]) -> Manager:
    """Rebuild the manager recorded by :meth:`Manager.to_state` (in state/kill/delete/...)."""
    if isinstance(d, dict) and d.get("driver") == "systemd":
        from ociruntime.cgroups.systemd import from_state as systemd_from_state

        return systemd_from_state(d)
    return from_state(d)
