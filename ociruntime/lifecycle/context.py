"""Global options shared by every command (``--root``, ``--systemd-cgroup``, ...)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ROOT = "/run/ociruntime"


@dataclass(frozen=True)
class Context:
    root: str = DEFAULT_ROOT
    systemd_cgroup: bool = False
    rootless: str = "auto"
