"""rootfs/cleanup.py: which mounts a container without a mount namespace leaves, and their removal."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from forked import run_in_child

from ociruntime.errors import OCIError
from ociruntime.linux import mount as m
from ociruntime.rootfs import cleanup

MOUNTINFO = b"""\
20 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 20 0:40 / /b/rootfs rw - overlay overlay rw
31 30 0:41 / /b/rootfs/proc rw - proc proc rw
32 30 0:42 / /b/rootfs/dev rw - tmpfs tmpfs rw
33 32 0:43 / /b/rootfs/dev/pts rw - devpts devpts rw
34 30 0:44 / /b/rootfs/data\\040dir rw - tmpfs tmpfs rw
35 20 0:45 / /b/rootfsx rw - tmpfs tmpfs rw
36 20 0:46 / /b/other rw - tmpfs tmpfs rw
37 32 0:47 / /b/rootfs/dev rw - tmpfs tmpfs rw
"""


def test_mounts_beneath_only_strictly_below_deepest_first() -> None:
    found = cleanup.mounts_beneath("/b/rootfs", MOUNTINFO)
    assert [(e.mount_id, e.mount_point) for e in found] == [
        (33, "/b/rootfs/dev/pts"),
        (37, "/b/rootfs/dev"),  # stacked on 32: the later, upper one first
        (34, "/b/rootfs/data dir"),
        (32, "/b/rootfs/dev"),
        (31, "/b/rootfs/proc"),
    ]
    # the rootfs mount itself, a sibling with the same prefix and "/" are never included
    assert cleanup.mounts_beneath("/b/rootfs/", MOUNTINFO) == found
    assert cleanup.mounts_beneath("/", MOUNTINFO) == []


def test_unmount_beneath_keeps_preexisting_and_detaches_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    def fake_umount2(path: str, flags: int = 0) -> None:
        calls.append((path, flags))
        if path == "/b/rootfs/proc" and not flags & m.MNT_DETACH:
            raise OSError(errno.EBUSY, "umount2 /b/rootfs/proc: Device or resource busy", path)
        if path == "/b/rootfs/dev/pts":
            raise OSError(errno.EINVAL, "umount2: Invalid argument", path)

    monkeypatch.setattr(m, "umount2", fake_umount2)
    cleanup.unmount_beneath("/b/rootfs", [34], MOUNTINFO)
    nofollow = m.UMOUNT_NOFOLLOW
    assert calls == [
        ("/b/rootfs/dev/pts", nofollow),  # EINVAL: gone already, ignored
        ("/b/rootfs/dev", nofollow),
        ("/b/rootfs/dev", nofollow),
        ("/b/rootfs/proc", nofollow),
        ("/b/rootfs/proc", nofollow | m.MNT_DETACH),
    ]


def test_unmount_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_umount2(path: str, flags: int = 0) -> None:
        raise OSError(errno.EPERM, "umount2 /b/rootfs/proc: Operation not permitted", path)

    monkeypatch.setattr(m, "umount2", fake_umount2)
    with pytest.raises(OCIError) as exc:
        cleanup.unmount_beneath("/b/rootfs", [], b"31 30 0:41 / /b/rootfs/proc rw - proc proc rw\n")
    assert str(exc.value) == "umount2 /b/rootfs/proc: operation not permitted"


@pytest.mark.root
def test_real_unmount_in_private_namespace(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"

    def child() -> dict:
        rootfs.mkdir()
        m.mount("tmpfs", str(rootfs), "tmpfs", 0)  # the engine's rootfs mount: stays
        for sub in ("kept", "a", "a/b", "busy"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
            m.mount("tmpfs", str(rootfs / sub), "tmpfs", 0)
        (rootfs / "a" / "b" / "c").mkdir()
        m.mount("tmpfs", str(rootfs / "a" / "b" / "c"), "tmpfs", 0)
        kept = [e.mount_id for e in cleanup.mounts_beneath(str(rootfs)) if e.mount_point.endswith("/kept")]
        busy = os.open(str(rootfs / "busy"), os.O_RDONLY | os.O_DIRECTORY)
        os.fchdir(busy)  # EBUSY for a plain umount: detached lazily
        cleanup.unmount_beneath(str(rootfs), kept)
        left = [e.mount_point for e in cleanup.mounts_beneath(str(rootfs))]
        cleanup.unmount_beneath(str(rootfs), kept)  # idempotent
        with open("/proc/self/mountinfo") as f:
            root_mounted = any(line.split()[4] == str(rootfs) for line in f)
        return {"left": left, "root_mounted": root_mounted}

    out = run_in_child(child)
    assert out == {"left": [str(rootfs / "kept")], "root_mounted": True}
