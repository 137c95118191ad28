"""A bundle made by an unprivileged user: its config runs in a user namespace (runc's rootless
edits, ``spec.default._to_rootless``), mapping the user to root and, when /etc/subuid and
/etc/subgid give the user a range, container ids 1..N to that range (through newuidmap and
newgidmap, as the runtime does for any rootless config).

What differs from ``spec --rootless``: a bundle that has a network namespace of its own (``--net
none``) keeps it, and with it a real sysfs (the kernel allows that mount to the user namespace
that owns the network namespace); only without one (``host``) is /sys the host's, bound
read-only.  The image's user must be mapped: a user outside the map is refused here, with the
fix, rather than failing at ``run``.

Files keep the caller's ownership (an unprivileged extraction cannot chown), so inside the
container every image file belongs to root.
"""

from __future__ import annotations

import os
import pwd

from ociruntime.errors import ImageError

SUBID_MAX = 65536


def subordinate_range(path: str, uid: int) -> tuple[int, int] | None:
    """The first ``start, count`` of ``path`` (/etc/subuid format) for the user ``uid``, with
    count capped at 65536 (the usual span; container ids stay below 65537)."""
    from ociruntime.rootless import parse_subid, read_text

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    ranges = [(start, count) for start, count in parse_subid(read_text(path), name, uid) if start > 0]
    return (ranges[0][0], min(ranges[0][1], SUBID_MAX)) if ranges else None


def _maps(own: int, sub: tuple[int, int] | None) -> list[dict[str, int]]:
    maps = [{"containerID": 0, "hostID": own, "size": 1}]
    if sub is not None:
        maps.append({"containerID": 1, "hostID": sub[0], "size": sub[1]})
    return maps


def _mapped(maps: list[dict[str, int]], ident: int) -> bool:
    return any(m["containerID"] <= ident < m["containerID"] + m["size"] for m in maps)


def make_rootless(config: dict, *, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> None:
    """Edit ``config`` (made for root) in place to run as the calling user."""
    uid, gid = os.geteuid(), os.getegid()
    uid_maps = _maps(uid, subordinate_range(subuid, uid))
    gid_maps = _maps(gid, subordinate_range(subgid, uid))
    user = config["process"]["user"]
    if not _mapped(uid_maps, user["uid"]):
        raise ImageError(f"user {user['uid']} of the image is not mapped in a rootless bundle: give the "
                         "user a subordinate uid range (/etc/subuid), or choose --user 0")
    for g in (user["gid"], *user.get("additionalGids", ())):
        if not _mapped(gid_maps, g):
            raise ImageError(f"group {g} of the image is not mapped in a rootless bundle: give the user "
                             "a subordinate gid range (/etc/subgid), or choose --user 0:0")
    linux = config["linux"]
    own_netns = any(ns["type"] == "network" and "path" not in ns for ns in linux["namespaces"])
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "user"] + [{"type": "user"}]
    linux["uidMappings"], linux["gidMappings"] = uid_maps, gid_maps
    linux.pop("resources", None)  # device rules cannot be written without cgroup access
    for mount in config["mounts"]:
        if mount["destination"] == "/sys" and not own_netns:
            mount.update(type="none", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
        elif mount["type"] == "devpts" and not _mapped(gid_maps, 5):
            mount["options"] = [o for o in mount["options"] if not o.startswith("gid=")]
