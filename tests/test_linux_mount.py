"""linux/mount.py, linux/openat2.py and linux/procfs.py wrappers.

Privileged cases run in a forked child that first unshares its mount namespace (and makes "/"
a slave), so the test runner's own mounts are never touched; results come back over a pipe.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest
from forked import CLONE_NEWNET, CLONE_NEWNS, ChildError, run_in_child

from ociruntime.linux import mount as m
from ociruntime.linux.procfs import PROC_SUPER_MAGIC, open_procfs, write_proc


def test_constants_match_the_kernel_abi() -> None:
    assert (m.MS_RDONLY, m.MS_NOSUID, m.MS_NODEV, m.MS_NOEXEC) == (1, 2, 4, 8)
    assert (m.MS_BIND, m.MS_MOVE, m.MS_REC) == (4096, 8192, 16384)
    assert (m.MS_PRIVATE, m.MS_SLAVE, m.MS_SHARED) == (1 << 18, 1 << 19, 1 << 20)
    assert (m.MS_RELATIME, m.MS_STRICTATIME) == (1 << 21, 1 << 24)
    assert ctypes.sizeof(m.MountAttr) == 32


def test_statvfs_flags_translate() -> None:
    got = m.statvfs_to_ms(m.ST_RDONLY | m.ST_NOSUID | m.ST_RELATIME)
    assert got == m.MS_RDONLY | m.MS_NOSUID | m.MS_RELATIME
    assert m.statvfs_to_ms(0) == 0


def test_fstatfs_type_of_proc() -> None:
    fd = os.open("/proc", os.O_PATH)
    try:
        assert m.fstatfs_type(fd) == PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def test_mount_error_names_the_target(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        m.mount("none", str(tmp_path / "missing"), "no-such-fs-type", 0)
    assert info.value.filename == str(tmp_path / "missing")
    assert info.value.strerror.startswith("mount: ")


@pytest.mark.root
def test_mount_remount_umount(tmp_path: Path) -> None:
    target = str(tmp_path)

    def child() -> list:
        m.mount("tmpfs", target, "tmpfs", m.MS_NOSUID, "size=1m")
        Path(target, "f").write_text("x")
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY)
        m.mount(None, f"/proc/self/fd/{fd}", None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | m.MS_NOSUID)
        flags = m.mount_flags_of(target)
        try:
            Path(target, "g").write_text("x")
            wrote = True
        except OSError as e:
            wrote = e.errno != errno.EROFS
        os.close(fd)
        m.umount2(target, m.MNT_DETACH)
        return [flags, wrote, os.listdir(target)]

    flags, wrote, after = run_in_child(child)
    assert flags & (m.MS_RDONLY | m.MS_NOSUID) == m.MS_RDONLY | m.MS_NOSUID
    assert not wrote and after == []


@pytest.mark.root
def test_fd_based_mount_api(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file").write_text("content")
    (tmp_path / "dst").mkdir()
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")

    def child() -> list:
        # A read-only clone of src attached on dst, all through fds.
        tree = m.open_tree(m.AT_FDCWD, src, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC)
        m.mount_setattr(tree, "", m.AT_EMPTY_PATH, attr_set=m.MOUNT_ATTR_RDONLY)
        target = os.open(dst, os.O_PATH | os.O_DIRECTORY)
        m.move_mount(tree, "", target, "", m.MOVE_MOUNT_F_EMPTY_PATH | m.MOVE_MOUNT_T_EMPTY_PATH)
        content = Path(dst, "file").read_text()
        ro = bool(m.mount_flags_of(dst) & m.MS_RDONLY)
        # A fresh tmpfs from fsopen/fsmount on top.
        fsfd = m.fsopen("tmpfs")
        m.fsconfig(fsfd, m.FSCONFIG_SET_STRING, "size", "1m")
        m.fsconfig(fsfd, m.FSCONFIG_CMD_CREATE)
        mnt = m.fsmount(fsfd, m.FSMOUNT_CLOEXEC, m.MOUNT_ATTR_NOEXEC)
        m.move_mount(mnt, "", target, "", m.MOVE_MOUNT_F_EMPTY_PATH | m.MOVE_MOUNT_T_EMPTY_PATH)
        return [content, ro, os.listdir(dst), bool(m.mount_flags_of(dst) & m.MS_NOEXEC)]

    content, ro, listing, noexec = run_in_child(child)
    assert content == "content" and ro
    assert listing == [] and noexec
    assert os.listdir(tmp_path / "dst") == []


@pytest.mark.root
def test_mount_setattr_error_names_path() -> None:
    def child() -> None:
        m.mount_setattr(m.AT_FDCWD, "/nonexistent-path-xyz", 0, attr_set=m.MOUNT_ATTR_RDONLY)

    with pytest.raises(ChildError) as info:
        run_in_child(child)
    assert info.value.out["errno"] == errno.ENOENT
    assert info.value.out["filename"] == "/nonexistent-path-xyz"


@pytest.mark.root
def test_open_procfs_is_fresh_and_detached() -> None:
    def child() -> list:
        fd = open_procfs()
        st = os.fstat(fd)
        self_link = os.readlink("self", dir_fd=fd)
        return [m.fstatfs_type(fd), st.st_ino, stat.S_ISDIR(st.st_mode), self_link, os.getpid()]

    magic, ino, is_dir, self_link, pid = run_in_child(child)
    assert magic == PROC_SUPER_MAGIC and ino == 1 and is_dir
    assert self_link == str(pid)


@pytest.mark.root
def test_write_proc_through_the_handle_ignores_decoys(tmp_path: Path) -> None:
    decoy = tmp_path / "decoy"
    decoy.write_text("untouched\n")

    def child() -> list:
        fd = open_procfs()
        # A decoy bound over the *mounted* /proc's sysctl must not catch the write.
        m.mount(str(decoy), "/proc/sys/net/core/somaxconn", None, m.MS_BIND)
        write_proc(fd, "sys/net/core/somaxconn", "1234")
        write_proc(fd, "self/oom_score_adj", "7")
        real = os.open("sys/net/core/somaxconn", os.O_RDONLY, dir_fd=fd)
        value = os.read(real, 64).decode().strip()
        os.close(real)
        with open("/proc/self/oom_score_adj") as f:
            oom = f.read().strip()
        return [value, oom]

    # A new network namespace: somaxconn is per-netns, so the host's value is never changed.
    value, oom = run_in_child(child, CLONE_NEWNS | CLONE_NEWNET)
    assert value == "1234" and oom == "7"
    assert decoy.read_text() == "untouched\n"


@pytest.mark.root
def test_write_proc_refuses_symlinks_and_names_the_path() -> None:
    def child() -> None:
        fd = open_procfs()
        # "mounts" is a symlink to self/mounts: RESOLVE_NO_SYMLINKS refuses it.
        write_proc(fd, "mounts", "x")

    with pytest.raises(ChildError) as info:
        run_in_child(child)
    assert info.value.out["errno"] == errno.ELOOP
    assert info.value.out["filename"] == "/proc/mounts"
