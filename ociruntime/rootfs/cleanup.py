"""Unmount what a container without a mount namespace of its own left beneath its rootfs.

Such a container mounts into the runtime's (the host's) mount namespace, so its mounts outlive
it.  ``create`` records the ids of the mounts that already were beneath the rootfs (an engine's
or an administrator's: never ours to remove); ``delete`` and a failed ``create`` then unmount
every *other* mount strictly beneath the rootfs, deepest first, lazily when busy.  The rootfs
itself (an engine's overlay mount, say) is never touched, nor anything outside it.

Runs after the container's processes were killed: nothing of the container can rearrange the
tree between reading /proc/self/mountinfo and unmounting, and the paths the kernel reports there
contain no symlinks (``UMOUNT_NOFOLLOW`` refuses one planted in the last component anyway).
"""

from __future__ import annotations

import errno

from ociruntime.errors import OCIError, describe_oserror
from ociruntime.linux import mount as m
from ociruntime.linux.mountinfo import MountInfo, parse_mountinfo

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection


def _read_mountinfo() -> bytes:
    with open("/proc/self/mountinfo", "rb") as f:
        return f.read()


def mounts_beneath(rootfs: str, mountinfo: bytes | None = None) -> list[MountInfo]:
    """The mounts strictly beneath ``rootfs`` (not the rootfs mount itself), deepest first."""
    top = rootfs.rstrip("/")
    if not top:
        return []  # never "everything beneath /"
    data = _read_mountinfo() if mountinfo is None else mountinfo
    found = [e for e in parse_mountinfo(data) if e.mount_point.startswith(top + "/")]
    # A child's mount point is always deeper than its parent's; of mounts stacked on one path,
    # unmounting the path removes the top one, the one with the higher id (made later).
    found.sort(key=lambda e: (e.mount_point.count("/"), e.mount_id), reverse=True)
    return found


def mount_ids_beneath(rootfs: str) -> list[int]:
    """Ids of the mounts beneath ``rootfs`` now (create keeps them: they are not the container's)."""
    return sorted(e.mount_id for e in mounts_beneath(rootfs))


def _umount(path: str) -> None:
    try:
        m.umount2(path, m.UMOUNT_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT):
            return  # gone already: a lazily detached parent took it along
        if e.errno != errno.EBUSY:
            raise
        # A process outside the container (or one still exiting) holds it: detach it now, the
        # kernel frees it when the last user lets go.
        m.umount2(path, m.MNT_DETACH | m.UMOUNT_NOFOLLOW)


def unmount_beneath(rootfs: str, kept: Collection[int], mountinfo: bytes | None = None) -> None:
    """Unmount every mount beneath ``rootfs`` whose id is not in ``kept``; idempotent."""
    keep = set(kept)
    for entry in mounts_beneath(rootfs, mountinfo):
        if entry.mount_id in keep:
            continue
        try:
            _umount(entry.mount_point)
        except OSError as e:
            raise OCIError(describe_oserror(e)) from None
