"""The ``features`` document (runtime-spec features.md): what this runtime really supports.

Every entry is derived from the tables the code itself uses, so the document cannot claim an
option, capability or seccomp action that the planner or compiler would reject.
"""

from __future__ import annotations

from typing import Any

from ociruntime import SPEC_VERSION, __version__
from ociruntime.hooks import HOOK_KINDS
from ociruntime.linux.caps import CAP_NAMES, last_cap
from ociruntime.linux.ns import NAMESPACES
from ociruntime.rootfs.plan import mount_option_names


def features() -> dict[str, Any]:
    from ociruntime.seccomp.compile import supported_features

    top = last_cap()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": mount_option_names(),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": [n for n, v in sorted(CAP_NAMES.items(), key=lambda kv: kv[1]) if v <= top],
            # v1/hybrid tested on the host, v2 (with the eBPF device filter) in a pure cgroup v2
            # guest, the systemd driver in guests booted with systemd (v2 and hybrid), the user
            # (rootless) systemd driver there with a user manager on v2, alone and under rootless
            # podman; rdma is written but has no test hardware.
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": False},
            "seccomp": supported_features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
            "netDevices": {"enabled": False},
        },
        "annotations": {
            "io.github.ociruntime.version": __version__,
        },
    }
