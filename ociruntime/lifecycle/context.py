"""Global options shared by every command (``--root``, ``--systemd-cgroup``, ...)."""

from __future__ import annotations

DEFAULT_ROOT = "/run/ociruntime"
# Caches (compiled seccomp filters) live beside the state root, never in it: engines such as
# dockerd give every runtime one --root and list each entry there as a container.
DEFAULT_CACHE = "/run/ociruntime-cache"


class Context:
    """Read-only bag of global options (a plain class: no `dataclasses` import on hot paths)."""

    __slots__ = ("cache", "criu", "root", "rootless", "systemd_cgroup")

    def __init__(self, root: str = DEFAULT_ROOT, systemd_cgroup: bool = False,
                 rootless: str = "auto", cache: str = DEFAULT_CACHE, criu: str = "criu") -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.rootless = rootless
        # Rootless: beside the state root in $XDG_RUNTIME_DIR (cli/main.py), as /run is root's.
        self.cache = cache
        # The CRIU binary checkpoint/restore run (global --criu; a name is looked up in $PATH).
        self.criu = criu

    @property
    def seccomp_cache(self) -> str:
        """Where compiled seccomp filters are kept (ociruntime.seccomp.compile bounds its size)."""
        return self.cache + "/seccomp"
