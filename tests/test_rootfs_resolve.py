"""In-root resolution and creation (rootfs/resolve.py), mountinfo parsing; no root needed."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociruntime.linux.mountinfo import parse_mountinfo
from ociruntime.linux.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, openat2
from ociruntime.rootfs.resolve import (
    create_file,
    error_context,
    fd_path,
    mkdir_all,
    secure_join,
    verify_fd,
)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "bin").mkdir()
    (rootfs / "bin" / "sh").write_text("")
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
    yield rootfs, fd
    os.close(fd)


def test_plain_and_missing_paths(root) -> None:
    _, fd = root
    assert secure_join(fd, "/etc") == "etc"
    assert secure_join(fd, "/etc/new/deeper") == "etc/new/deeper"
    assert secure_join(fd, "/") == ""


def test_dotdot_is_clamped_at_the_root(root) -> None:
    _, fd = root
    assert secure_join(fd, "/../../etc") == "etc"
    assert secure_join(fd, "/etc/../../../bin/sh") == "bin/sh"
    assert secure_join(fd, "/missing/../../x") == "x"


def test_absolute_symlink_to_host_stays_inside(root, tmp_path: Path) -> None:
    rootfs, fd = root
    host = tmp_path / "host"
    host.mkdir()
    (rootfs / "etc" / "resolv.conf").symlink_to(host / "x")
    rel = secure_join(fd, "/etc/resolv.conf")
    assert rel == str(host / "x").lstrip("/")
    # Creating it lands inside the rootfs, never in the host directory.
    new = create_file(fd, rel, root_path=str(rootfs))
    try:
        assert fd_path(new) == str(rootfs / rel)
    finally:
        os.close(new)
    assert list(host.iterdir()) == []
    assert (rootfs / rel).is_file()


def test_relative_symlink_climbing_out_is_clamped(root) -> None:
    rootfs, fd = root
    (rootfs / "etc" / "link").symlink_to("../../../../bin")
    assert secure_join(fd, "/etc/link/sh") == "bin/sh"


def test_symlink_loop_is_eloop(root) -> None:
    rootfs, fd = root
    (rootfs / "a").symlink_to("b")
    (rootfs / "b").symlink_to("a")
    with pytest.raises(OSError) as info:
        secure_join(fd, "/a/x")
    assert info.value.errno == errno.ELOOP


def test_no_follow_refuses_any_symlink(root) -> None:
    rootfs, fd = root
    (rootfs / "proc").symlink_to("/x")
    with pytest.raises(OSError) as info:
        secure_join(fd, "/proc", follow=False)
    assert info.value.errno == errno.ELOOP
    assert "/proc is a symlink" in info.value.strerror


def test_file_in_the_middle_is_enotdir(root) -> None:
    _, fd = root
    with pytest.raises(OSError) as info:
        secure_join(fd, "/bin/sh/x")
    assert info.value.errno == errno.ENOTDIR


def test_mkdir_all_through_symlinked_dir_stays_inside(root, tmp_path: Path) -> None:
    rootfs, fd = root
    host = tmp_path / "hostdev"
    host.mkdir()
    (rootfs / "dev").symlink_to(host)
    rel = secure_join(fd, "/dev/net")
    dfd = mkdir_all(fd, rel, root_path=str(rootfs))
    try:
        assert fd_path(dfd) == str(rootfs / rel)
    finally:
        os.close(dfd)
    assert list(host.iterdir()) == []


def test_mkdir_all_no_symlinks_refuses(root) -> None:
    rootfs, fd = root
    (rootfs / "sys").symlink_to("etc")
    with pytest.raises(OSError) as info:
        mkdir_all(fd, "sys", no_symlinks=True)
    assert info.value.errno == errno.ELOOP


def test_verify_fd_detects_a_moved_target(root) -> None:
    rootfs, _ = root
    efd = os.open(rootfs / "etc", os.O_PATH)
    try:
        verify_fd(efd, str(rootfs), "etc", "/etc")
        with pytest.raises(OSError) as info:
            verify_fd(efd, str(rootfs), "bin", "/bin")
        assert info.value.errno == errno.EXDEV
    finally:
        os.close(efd)


def test_create_file_keeps_existing_and_refuses_dirs(root) -> None:
    rootfs, fd = root
    (rootfs / "etc" / "hosts").write_text("keep")
    os.close(create_file(fd, "etc/hosts"))
    assert (rootfs / "etc" / "hosts").read_text() == "keep"
    with pytest.raises(OSError) as info:
        create_file(fd, "etc")
    assert info.value.errno == errno.EISDIR


def test_openat2_in_root_and_no_symlinks(root) -> None:
    rootfs, fd = root
    (rootfs / "escape").symlink_to("/../../etc")
    got = openat2(fd, "escape", os.O_PATH | os.O_CLOEXEC, RESOLVE_IN_ROOT)
    try:
        assert fd_path(got) == str(rootfs / "etc")
    finally:
        os.close(got)
    with pytest.raises(OSError) as info:
        openat2(fd, "escape", os.O_PATH, RESOLVE_NO_SYMLINKS, name="/escape")
    assert info.value.errno == errno.ELOOP and info.value.filename == "/escape"


def test_error_context_names_the_operation() -> None:
    with pytest.raises(OSError) as info, error_context("mount tmpfs on /dev", "/dev"):
        raise OSError(errno.EPERM, "mount: Operation not permitted", "/proc/self/fd/7")
    assert info.value.errno == errno.EPERM
    assert info.value.strerror == "mount tmpfs on /dev: Operation not permitted"
    assert info.value.filename == "/dev"


def test_parse_mountinfo_unescapes_and_splits() -> None:
    text = (
        b"36 35 98:0 /mnt1 /mnt\\040with\\011tab rw,noatime master:1 shared:5 - ext3 /dev/root rw\n"
        b"40 36 0:22 / /proc rw,nosuid - proc proc rw\n"
    )
    first, second = parse_mountinfo(text)
    assert first.mount_point == "/mnt with\ttab"
    assert first.optional == "master:1 shared:5"
    assert first.fstype == "ext3"
    assert (second.mount_id, second.mount_point, second.optional, second.fstype) == (40, "/proc", "", "proc")


def test_parse_own_mountinfo() -> None:
    with open("/proc/self/mountinfo", "rb") as f:
        entries = parse_mountinfo(f.read())
    assert any(e.mount_point == "/" for e in entries)
