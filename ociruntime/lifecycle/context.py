"""Global options shared by every command (``--root``, ``--systemd-cgroup``, ...)."""

from __future__ import annotations

DEFAULT_ROOT = "/run/ociruntime"


class Context:
    """Read-only bag of global options (a plain class: no `dataclasses` import on hot paths)."""

    __slots__ = ("root", "rootless", "systemd_cgroup")

    def __init__(self, root: str = DEFAULT_ROOT, systemd_cgroup: bool = False,
                 rootless: str = "auto") -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.rootless = rootless
