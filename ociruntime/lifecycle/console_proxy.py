"""Foreground ``run``/``exec -t`` without ``--console-socket``: be our own console client.

We listen on a private socket, receive the pty master like conmon would, put our own terminal
(if stdin is one) in raw mode and copy bytes both ways until the container's terminal closes.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty


class ConsoleProxy:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        # create connects before it forks; the connection waits in the backlog until accept()
        self.sock.listen(1)
        self.master = -1

    def receive(self) -> None:
        """Take the pty master the container's init sent (one SCM_RIGHTS fd)."""
        self.sock.settimeout(30)
        conn, _ = self.sock.accept()
        with conn:
            fds = array.array("i")
            _msg, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, ctype, data in anc:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(71, "console socket: expected exactly one pty master fd")
        self.master = fds[0]

    def _copy_winsize(self) -> None:
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)

    def pump(self) -> None:
        """Copy stdin -> master and master -> stdout until the container side closes."""
        saved = termios.tcgetattr(0) if os.isatty(0) else None
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: self._copy_winsize())
        self._copy_winsize()
        try:
            if saved is not None:
                tty.setraw(0)
            inputs = [self.master, 0]
            while True:
                try:
                    ready, _, _ = select.select(inputs, [], [])
                except InterruptedError:
                    continue
                if self.master in ready:
                    try:
                        data = os.read(self.master, 65536)
                    except OSError:  # EIO: every slave fd is closed, the container is gone
                        data = b""
                    if not data:
                        return
                    os.write(1, data)
                if 0 in ready:
                    data = os.read(0, 65536)
                    if data:
                        os.write(self.master, data)
                    else:
                        inputs.remove(0)  # our stdin hit EOF: keep showing output
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, old_winch)

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
