"""The cgroup manager interface the lifecycle code programs against."""

from __future__ import annotations

from abc import ABC, abstractmethod

# Annotations only (postponed by `from __future__ import annotations`): `typing` and
# `collections.abc` cost ~4 ms to import on state/kill/delete, which rebuild a manager.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The name the cgroup2 hierarchy goes by in paths/mounts maps (on hybrid and pure v2 hosts).
UNIFIED = "unified"


class Manager(ABC):
    """One container's cgroup across every mounted hierarchy.

    ``paths`` maps a hierarchy name ("memory", "cpu", "name=systemd", "unified", ...) to the
    container's absolute cgroup directory in it; co-mounted controllers share a directory.
    ``mounts`` maps the same names to the hierarchy's mount point on the host.
    ``mode`` is the layout the manager drives: "v1", "v2" or "hybrid".
    """

    paths: dict[str, str]
    mounts: dict[str, str]
    mode: str

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """A small JSON-able dict from which :func:`manager_from_state` rebuilds the manager.

        Call it after :meth:`create`: it records which parent directories were created.
        """

    @abstractmethod
    def to_intent(self) -> dict[str, Any]:
        """:meth:`to_state` as it will be after :meth:`create`, for create's intent record
        (state/store.py): ``created`` lists the directories that do not exist yet.  Called
        before :meth:`create`, so that a create killed midway can be undone."""

    @abstractmethod
    def check_existing(self, warn: Callable[[str], None]) -> None:
        """Before :meth:`create`: refuse a cgroup that is frozen (the init would never run),
        ``warn`` about one that already holds processes (runc's checks on a reused cgroup)."""

    @abstractmethod
    def create(self) -> None:
        """Create the cgroup (and missing parents) in every hierarchy."""

    @abstractmethod
    def join(self, pid: int) -> None:
        """Move ``pid`` into the cgroup in every hierarchy."""

    @abstractmethod
    def set_resources(self, resources: dict[str, Any], *, skip_devices: bool = False) -> None:
        """Apply ``linux.resources`` (parsed JSON); ``skip_devices`` leaves device rules alone."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Every pid in the cgroup and its descendants, sorted."""

    @abstractmethod
    def freeze(self) -> None:
        """Freeze every task and wait until the kernel reports the cgroup frozen."""

    @abstractmethod
    def thaw(self) -> None:
        """Undo :meth:`freeze`."""

    @abstractmethod
    def is_frozen(self) -> bool:
        """Whether the cgroup is frozen."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup (and sub-cgroups, and the parents it created) everywhere; idempotent."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the cgroup directory still exists in any hierarchy."""
