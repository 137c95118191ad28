"""The example config.json written by ``ociruntime spec``.

It mirrors what ``runc spec`` (runc 1.1) generates, field for field and in the same key order, so
a bundle made for one runtime works with the other and clients that diff the output (or tutorials
that patch it with ``jq``) see no surprise.  Only ``ociVersion`` (we implement 1.3.0) and the
hostname differ.  ``rootless=True`` mirrors ``runc spec --rootless``: the same document run
through runc's ``ToRootless`` transformation (``libcontainer/specconv/example.go``).

Every call builds a fresh dict, so callers may edit the result freely.
"""

from __future__ import annotations

import os
from typing import Any

from ociruntime import SPEC_VERSION

HOSTNAME = "ociruntime"

# runc's example grants only these three: enough for a shell to bind low ports and signal its
# children, and AUDIT_WRITE so login-like tools do not fail.  runc 1.1 lists them in every set,
# ambient included.
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

# Paths that leak host information or allow host-wide actions even from a container
# (runc's defaults, which the OCI spec's maskedPaths/readonlyPaths are modelled on).
_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _process() -> dict[str, Any]:
    return {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": list(_DEFAULT_CAPS),
            "effective": list(_DEFAULT_CAPS),
            "permitted": list(_DEFAULT_CAPS),
            "ambient": list(_DEFAULT_CAPS),
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def _linux() -> dict[str, Any]:
    return {
        # Deny every device node access by default; the runtime adds the standard allow list.
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": list(_MASKED_PATHS),
        "readonlyPaths": list(_READONLY_PATHS),
    }


def _to_rootless(config: dict[str, Any]) -> None:
    """Apply runc's ``ToRootless`` edits in place, in the order runc makes them.

    An unprivileged user cannot create a network namespace that is useful without a helper, cannot
    map group 5 (so devpts' ``gid=5`` would fail), cannot mount a fresh sysfs outside a network
    namespace it owns (so /sys becomes a recursive bind of the host's), and cannot write device
    cgroup rules (so ``resources`` goes away).
    """
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    linux["namespaces"].append({"type": "user"})
    # Key order as runc emits it: mappings come before namespaces, where resources used to be.
    mappings = {
        "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
    }
    del linux["resources"]
    config["linux"] = {**mappings, **linux}

    for mount in config["mounts"]:
        if mount["destination"] == "/sys":
            mount["type"] = "none"
            mount["source"] = "/sys"
            mount["options"] = ["rbind", "nosuid", "noexec", "nodev", "ro"]
        elif mount["type"] == "devpts":
            mount["options"] = [opt for opt in mount["options"] if not opt.startswith("gid=")]


def default_config(rootless: bool = False) -> dict[str, Any]:
    """Return a new example config (runc's ``spec`` output shape); ``rootless`` as ``spec --rootless``."""
    config: dict[str, Any] = {
        "ociVersion": SPEC_VERSION,
        "process": _process(),
        "root": {"path": "rootfs", "readonly": True},
        "hostname": HOSTNAME,
        "mounts": _mounts(),
        "linux": _linux(),
    }
    if rootless:
        _to_rootless(config)
    return config
