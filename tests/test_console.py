"""Tests for the console socket / pty code (ociruntime.linux.tty, ociruntime.init.console).

The end-to-end tests fork a child that unshares a mount namespace, makes it private and mounts
a fresh devpts instance there, so nothing they mount is visible to (or left in) the host.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import stat
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from ociruntime.init.console import setup_console
from ociruntime.linux.libc import LIBC, check
from ociruntime.linux.mount import MS_PRIVATE, MS_REC, fstatfs_type, mount
from ociruntime.linux.tty import (
    DEVPTS_SUPER_MAGIC,
    connect_unix,
    get_winsize,
    open_peer,
    open_ptmx_in,
    send_fd,
    set_winsize,
)

# Guard against a hang if the child never answers; not a timing assertion.
SAFETY_MS = 20_000

CLONE_NEWNS = 0x00020000  # <linux/sched.h>; os.CLONE_NEWNS is 3.12+
_unshare = LIBC["unshare"]
_unshare.argtypes = (ctypes.c_int,)


def _private_mount_ns() -> None:
    """Enter a new mount namespace where nothing propagates back to the host (os.unshare is 3.12+)."""
    check(_unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def _mount_devpts(path: Path) -> None:
    mount("devpts", str(path), "devpts", 0, "newinstance,ptmxmode=0666,mode=0620")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


class Sandbox:
    """Paths for one test: a devpts mount point, a console file and a listening console socket."""

    def __init__(self, tmp_path: Path) -> None:
        self.pts = tmp_path / "pts"
        self.pts.mkdir()
        self.console = tmp_path / "console"
        self.console.touch()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(tmp_path / "console.sock"))
        self.listener.listen(1)
        self.sock_path = str(tmp_path / "console.sock")

    def close(self) -> None:
        self.listener.close()


def _run_in_child(box: Sandbox, body: Callable[[int], dict]) -> tuple[int, socket.socket, int]:
    """Fork a child with a private mount ns and a fresh devpts on ``box.pts``; run ``body(client_fd)``.

    The child writes ``body``'s result (or its traceback) as JSON to the returned report pipe.
    Returns (pid, the accepted server side of the console socket, report read fd).
    """
    # Connected before fork, as the runtime does on the host side.
    client = connect_unix(box.sock_path)
    server, _ = box.listener.accept()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(report_r)
            _private_mount_ns()
            _mount_devpts(box.pts)
            result = body(client)
            code = 0
        except BaseException as exc:
            result = {"error": "".join(traceback.format_exception(exc)), "errno": getattr(exc, "errno", None)}
        try:
            os.write(report_w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(client)
    os.close(report_w)
    return pid, server, report_r


def _recv_master(server: socket.socket) -> tuple[bytes, list[int]]:
    """Receive the one console message: return (data, fds)."""
    data, ancdata, flags, _ = server.recvmsg(256, socket.CMSG_SPACE(16 * 4))
    assert not flags & socket.MSG_CTRUNC
    fds: list[int] = []
    for level, kind, payload in ancdata:
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        fds.extend(int.from_bytes(payload[i : i + 4], "little") for i in range(0, len(payload), 4))
    return data, fds


def _read_until(fd: int, needle: bytes) -> bytes:
    buf = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while needle not in buf:
        assert poller.poll(SAFETY_MS), f"no output from the pty; got {buf!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:  # EIO: every peer fd closed
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        buf += chunk
    return buf


def _terminal_child(box: Sandbox, size: tuple[int, int] | None, bind: bool) -> Callable[[int], dict]:
    def body(client: int) -> dict:
        setup_console(client, size, bind, pts_dir=str(box.pts), console_path=str(box.console))
        st0 = os.fstat(0)
        console = os.stat(box.console)
        # Field 7 of /proc/self/stat is the controlling terminal's device number (proc(5)).
        with open("/proc/self/stat") as f:
            tty_nr = int(f.read().rsplit(")", 1)[1].split()[4])
        report = {
            "winsize": list(get_winsize(0)),
            "same_012": len({(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (0, 1, 2)}) == 1,
            "isatty": all(os.isatty(fd) for fd in (0, 1, 2)),
            "major0": os.major(st0.st_rdev),
            "ctty_is_peer": tty_nr == st0.st_rdev,
            "foreground": os.tcgetpgrp(0) == os.getpgrp(),
            "session_leader": os.getsid(0) == os.getpid(),
            "console_is_peer": stat.S_ISCHR(console.st_mode) and console.st_rdev == st0.st_rdev,
            "console_ino_is_peer": (console.st_dev, console.st_ino) == (st0.st_dev, st0.st_ino),
        }
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(0, 100)
            if not chunk:
                break
            line += chunk
        os.write(1, b"got: " + line)
        return report

    return body


@pytest.fixture
def box(tmp_path: Path):
    sandbox = Sandbox(tmp_path)
    yield sandbox
    sandbox.close()


def _finish(pid: int, report_r: int) -> tuple[int, dict]:
    with os.fdopen(report_r, "rb") as f:
        raw = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(raw) if raw else {}


@pytest.mark.root
@pytest.mark.parametrize("bind", [True, False])
def test_console_round_trip(box: Sandbox, bind: bool) -> None:
    pid, server, report_r = _run_in_child(box, _terminal_child(box, (24, 80), bind))
    master = -1
    finished = False
    try:
        data, fds = _recv_master(server)
        assert len(fds) == 1, (data, fds)
        master = fds[0]
        assert data.startswith(b"/dev/pts/")
        # The master is a devpts ptmx from the child's fresh instance.
        st = os.fstat(master)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (5, 2)
        assert fstatfs_type(master) == DEVPTS_SUPER_MAGIC
        # The init closed its socket end after the single message.
        assert server.recv(1) == b""
        os.write(master, b"ping\n")
        out = _read_until(master, b"got: ping")
        # Collect the report while the master is still open: closing it hangs up the child.
        code, report = _finish(pid, report_r)
        finished = True
    finally:
        server.close()
        if not finished:
            # The child may be waiting for input that will never come.
            os.kill(pid, signal.SIGKILL)
            _finish(pid, report_r)
        if master >= 0:
            os.close(master)
    assert code == 0, report
    assert b"got: ping" in out
    assert report["winsize"] == [24, 80]
    assert report["same_012"] and report["isatty"] and report["session_leader"]
    assert report["ctty_is_peer"] and report["foreground"]
    assert report["major0"] in range(136, 144)
    assert report["console_is_peer"] is bind
    assert report["console_ino_is_peer"] is bind


@pytest.mark.root
def test_console_without_size_keeps_default(box: Sandbox) -> None:
    def body(client: int) -> dict:
        setup_console(client, None, False, pts_dir=str(box.pts), console_path=str(box.console))
        return {"winsize": list(get_winsize(0))}

    pid, server, report_r = _run_in_child(box, body)
    fds: list[int] = []
    try:
        _, fds = _recv_master(server)
    finally:
        server.close()
        # Keep the master open until the child is done: closing it hangs up the child's terminal.
        code, report = _finish(pid, report_r)
        for fd in fds:
            os.close(fd)
    assert code == 0, report
    assert report["winsize"] == [0, 0]


@pytest.mark.root
def test_console_symlink_target_refused(box: Sandbox, tmp_path: Path) -> None:
    decoy = tmp_path / "decoy"
    decoy.touch()
    link = tmp_path / "console-link"
    link.symlink_to(decoy)

    def body(client: int) -> dict:
        setup_console(client, None, True, pts_dir=str(box.pts), console_path=str(link))
        return {}

    pid, server, report_r = _run_in_child(box, body)
    try:
        data, fds = _recv_master(server)
    finally:
        server.close()
        code, report = _finish(pid, report_r)
    # Refused before anything was sent; the socket was closed all the same.
    assert (data, fds) == (b"", [])
    assert code == 1
    assert report["errno"] == errno.ELOOP
    assert "console target is a symlink" in report["error"]


def _in_private_ns(body: Callable[[], dict]) -> dict:
    """Run ``body`` in a forked child inside a private mount namespace; return its JSON report."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            _private_mount_ns()
            result = body()
        except BaseException as exc:
            result = {"error": "".join(traceback.format_exception(exc)), "errno": getattr(exc, "errno", None)}
        try:
            os.write(report_w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    return _finish(pid, report_r)[1]


@pytest.mark.root
def test_ptmx_outside_devpts_refused(tmp_path: Path) -> None:
    # A 5:2 node on a non-devpts filesystem next to a real devpts "pts" (the kernel then
    # allocates from that instance): the fd is a working ptmx, but not the devpts ptmx we want.
    fake_dir = tmp_path / "fakepts"
    (fake_dir / "pts").mkdir(parents=True)
    os.mknod(fake_dir / "ptmx", stat.S_IFCHR | 0o666, os.makedev(5, 2))

    def body() -> dict:
        _mount_devpts(fake_dir / "pts")
        dir_fd = os.open(fake_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            open_ptmx_in(dir_fd)
        finally:
            os.close(dir_fd)
        return {}

    report = _in_private_ns(body)
    assert report.get("errno") == errno.ENODEV, report
    assert "not on a devpts filesystem" in report["error"]


@pytest.mark.root
def test_ptmx_symlink_refused(tmp_path: Path) -> None:
    (tmp_path / "ptmx").symlink_to("/dev/pts/ptmx")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            open_ptmx_in(dir_fd)
    finally:
        os.close(dir_fd)
    assert info.value.errno == errno.ELOOP


@pytest.mark.root
def test_pty_pair_on_host_devpts() -> None:
    dir_fd = os.open("/dev/pts", os.O_RDONLY | os.O_DIRECTORY)
    try:
        master = open_ptmx_in(dir_fd)
    finally:
        os.close(dir_fd)
    try:
        peer = open_peer(master)
        try:
            assert os.major(os.fstat(peer).st_rdev) in range(136, 144)
            assert not os.get_inheritable(peer)
            set_winsize(peer, 50, 132)
            assert get_winsize(master) == (50, 132)
        finally:
            os.close(peer)
    finally:
        os.close(master)


@pytest.mark.parametrize(("rows", "cols"), [(-1, 80), (24, 65536), (True, 80), (24, 1.5)])
def test_set_winsize_range(rows: object, cols: object) -> None:
    with pytest.raises(ValueError, match="console size"):
        set_winsize(0, rows, cols)  # type: ignore[arg-type]


def test_send_fd_needs_a_name() -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(ValueError):
            send_fd(a.fileno(), b"", 0)
    finally:
        a.close()
        b.close()


def test_send_fd_single_message() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    try:
        send_fd(a.fileno(), b"name", r)
        data, fds = _recv_master(b)
        assert data == b"name" and len(fds) == 1
        os.write(w, b"x")
        assert os.read(fds[0], 1) == b"x"
        os.close(fds[0])
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_connect_unix_errors_name_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.sock")
    with pytest.raises(OSError) as info:
        connect_unix(missing)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == missing
    assert str(info.value).startswith("[Errno 2] connect: ")


def test_connect_unix_long_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "console.sock"
    assert len(os.fsencode(str(path))) > 108
    dir_fd = os.open(deep, os.O_PATH | os.O_DIRECTORY)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(f"/proc/self/fd/{dir_fd}/console.sock")
        listener.listen(1)
        fd = connect_unix(str(path))
        server, _ = listener.accept()
        try:
            assert not os.get_inheritable(fd)
            os.write(fd, b"hello")
            assert server.recv(5) == b"hello"
        finally:
            server.close()
            os.close(fd)
    finally:
        listener.close()
        os.close(dir_fd)
