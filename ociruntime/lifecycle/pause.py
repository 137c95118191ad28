"""``pause`` and ``resume``: freeze and thaw every process of a container through its cgroup.

The status is derived (state/store.py): a frozen cgroup is what makes a live container
``paused``, so nothing is written to the state record here.  Only a running container can be
paused: a created one has not run its program yet, and its status would keep reading
``created`` (the exec fifo decides that first), hiding the freeze from ``state`` and ``resume``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ociruntime.errors import StateError
from ociruntime.lifecycle.context import Context
from ociruntime.state.store import Store

if TYPE_CHECKING:
    from ociruntime.cgroups.base import Manager


def _manager(cgroup_state: dict, container_id: str) -> Manager:
    from ociruntime.cgroups import manager_from_state

    if not cgroup_state:
        raise StateError(f"container {container_id} has no cgroup to freeze")
    return manager_from_state(cgroup_state)


def pause(ctx: Context, container_id: str) -> None:
    """Freeze a running container (runc: ``container not running`` otherwise)."""
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        status = cdir.status(rec)
        if status == "paused":
            raise StateError("container already paused")
        if status == "created":
            raise StateError("cannot pause a created container: container not running")
        if status != "running":
            raise StateError("container not running")
        _manager(rec.cgroup, container_id).freeze()


def resume(ctx: Context, container_id: str) -> None:
    """Thaw a paused container (runc: ``container not paused`` otherwise)."""
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        if cdir.status(rec) != "paused":
            raise StateError("container not paused")
        _manager(rec.cgroup, container_id).thaw()
