"""Pseudo-terminal and console-socket primitives (pty(7), tty_ioctl(4), unix(7)).

The container's terminal is made *inside* the container from its own devpts instance: the ptmx
fd is checked to really be a devpts ptmx, and the peer is obtained with TIOCGPTPEER on that fd
instead of opening ``/dev/pts/N`` by name, which a hostile container could have swapped
(CVE-2025-52565).  Everything here is a thin wrapper usable in a forked child after pivot_root:
ctypes entry points are looked up at import time, before any fork.
"""

from __future__ import annotations

import _socket  # the C module: socket.py imports enum and selectors (~2.5 ms)
import errno
import fcntl
import os
import stat
import struct
import termios

from ociruntime.linux.libc import fsencode
from ociruntime.linux.mount import fstatfs_type

# <asm-generic/ioctls.h> numbers that the termios module does not export.
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441

DEVPTS_SUPER_MAGIC = 0x1CD1
# The ptmx multiplexer is char 5:2; UNIX98 pty peers use majors 136..143 (devices.txt).
PTMX_MAJOR, PTMX_MINOR = 5, 2
PTY_SLAVE_MAJORS = range(136, 144)

_WINSIZE = struct.Struct("HHHH")
_UINT = struct.Struct("I")
# sun_path is 108 bytes including the terminating NUL (unix(7)).
_SUN_PATH_MAX = 107


def _ioctl(fd: int, request: int, arg: int | bytes, name: str) -> int | bytes:
    """fcntl.ioctl raising OSError that names the request, as the other thin wrappers do."""
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        err = exc.errno or 0
        raise OSError(err, f"ioctl({name}): {os.strerror(err)}", f"/proc/self/fd/{fd}") from None


def _expect_char_device(fd: int, majors: range, minor: int | None, what: str) -> None:
    st = os.fstat(fd)
    ok = stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in majors
    if ok and minor is not None:
        ok = os.minor(st.st_rdev) == minor
    if not ok:
        raise OSError(
            errno.ENODEV,
            f"{what}: not a devpts pty device ({os.major(st.st_rdev)}:{os.minor(st.st_rdev)})",
            f"/proc/self/fd/{fd}",
        )


def open_ptmx_in(devpts_dir_fd: int) -> int:
    """Open ``ptmx`` in the devpts directory ``devpts_dir_fd``, verify it, unlock it; return the fd."""
    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open("ptmx", flags, dir_fd=devpts_dir_fd)
    except OSError as exc:
        err = exc.errno or 0
        raise OSError(err, f"open: {os.strerror(err)}", "/dev/pts/ptmx") from None
    try:
        # Both checks: a 5:2 node on another filesystem (tmpfs /dev/ptmx, a planted mknod) would
        # allocate the pty in whatever devpts instance the kernel associates with it, not ours.
        _expect_char_device(fd, range(PTMX_MAJOR, PTMX_MAJOR + 1), PTMX_MINOR, "ptmx")
        if fstatfs_type(fd) != DEVPTS_SUPER_MAGIC:
            raise OSError(errno.ENODEV, "ptmx: not on a devpts filesystem", "/dev/pts/ptmx")
        # New ptys start locked (pty(7)); unlockpt(3) is this ioctl with 0.
        _ioctl(fd, TIOCSPTLCK, _UINT.pack(0), "TIOCSPTLCK")
    except BaseException:
        os.close(fd)
        raise
    return fd


def pty_number(master: int) -> int:
    """Return N of the peer ``/dev/pts/N`` of ``master`` (TIOCGPTN)."""
    out = _ioctl(master, TIOCGPTN, _UINT.pack(0), "TIOCGPTN")
    assert isinstance(out, bytes)
    return _UINT.unpack(out)[0]


def open_peer(master: int) -> int:
    """Open the peer of ``master`` by fd (TIOCGPTPEER, no path lookup); return it, verified."""
    # ioctl_tty(2): TIOCGPTPEER takes open(2) flags and returns a new fd for the peer.
    fd = _ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC, "TIOCGPTPEER")
    assert isinstance(fd, int)
    try:
        _expect_char_device(fd, PTY_SLAVE_MAJORS, None, "pty peer")
    except BaseException:
        os.close(fd)
        raise
    return fd


def clear_onlcr(fd: int) -> None:
    """Turn off ONLCR on a terminal: "\n" stays "\n" (runc's console does this for a
    foreground caller, whose stdout may be a pipe or a file rather than a terminal)."""
    try:
        attrs = termios.tcgetattr(fd)
        attrs[1] &= ~termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error as e:
        err = e.args[0] if e.args and isinstance(e.args[0], int) else errno.EIO
        raise OSError(err, f"tcsetattr: {os.strerror(err)}", f"fd {fd}") from None


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Set the terminal's window size (TIOCSWINSZ); rows and cols are 0..65535."""
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueError(f"console size {name} out of range: {value!r}")
    _ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0), "TIOCSWINSZ")


def get_winsize(fd: int) -> tuple[int, int]:
    """Return the terminal's ``(rows, cols)`` (TIOCGWINSZ)."""
    out = _ioctl(fd, termios.TIOCGWINSZ, _WINSIZE.pack(0, 0, 0, 0), "TIOCGWINSZ")
    assert isinstance(out, bytes)
    rows, cols, _, _ = _WINSIZE.unpack(out)
    return rows, cols


def make_controlling(fd: int) -> None:
    """Start a new session and make the terminal ``fd`` its controlling terminal."""
    # A session leader without a controlling tty acquires one with TIOCSCTTY (credentials(7));
    # setsid() first, since a process cannot take a terminal into a session it does not lead.
    try:
        os.setsid()
    except OSError as exc:
        err = exc.errno or 0
        raise OSError(err, f"setsid: {os.strerror(err)}") from None
    _ioctl(fd, termios.TIOCSCTTY, 0, "TIOCSCTTY")


def send_fd(sock: int, name: bytes, fd: int) -> None:
    """Send ``fd`` over the connected unix socket ``sock`` in one sendmsg, ``name`` as the data."""
    if not name:
        raise ValueError("send_fd needs a non-empty name")
    s = _socket.socket(fileno=sock)
    try:
        # MSG_NOSIGNAL: a client that went away must give EPIPE, not kill us with SIGPIPE.
        sent = s.sendmsg(
            [name], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))], _socket.MSG_NOSIGNAL
        )
    except OSError as exc:
        err = exc.errno or 0
        raise OSError(err, f"sendmsg: {os.strerror(err)}", "console socket") from None
    finally:
        s.detach()
    if sent != len(name):
        raise OSError(errno.EIO, "sendmsg: short write", "console socket")


def connect_unix(path: str) -> int:
    """Connect a CLOEXEC SOCK_STREAM socket to the unix socket at ``path``; return its fd."""
    raw = fsencode(path)
    dir_fd = -1
    target = raw
    if len(raw) > _SUN_PATH_MAX:
        # sun_path is too short for some client paths: reach the socket through the fd of its
        # directory instead (the kernel resolves /proc/self/fd/N like the directory itself).
        head, _, tail = raw.rpartition(b"/")
        dir_fd = os.open(head or b"/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        target = b"/proc/self/fd/%d/%s" % (dir_fd, tail)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(target)
    except OSError as exc:
        s.close()
        # Python reports an over-long sun_path as an OSError without an errno.
        err = exc.errno or errno.ENAMETOOLONG
        raise OSError(err, f"connect: {os.strerror(err)}", path) from None
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    return s.detach()
