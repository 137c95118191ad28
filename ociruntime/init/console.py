"""The container's terminal, made by the init after pivot_root (``process.terminal: true``).

Protocol with the client (see CLIENTS.md "Console socket"): the runtime connects to the client's
``--console-socket`` in the parent, on the host, before any namespace is entered; the connected
fd is inherited by the init, which creates the pty pair in the container's own devpts, sends
the master in one sendmsg (data: a short name, control: exactly one SCM_RIGHTS fd) and closes
the socket.  No reply is expected.

Runs in the forked init: every import is at module top, and the only C calls go through the
``LIBC`` handle loaded before fork (via ``ociruntime.linux.mount`` and ``ociruntime.linux.tty``).
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.linux.mount import MS_BIND, mount
from ociruntime.linux.tty import clear_onlcr as tty_clear_onlcr
from ociruntime.linux.tty import make_controlling, open_peer, open_ptmx_in, pty_number, send_fd, set_winsize


def _open_pts_dir(pts_dir: str) -> int:
    # O_NOFOLLOW: after pivot_root the container owns this tree; a symlinked /dev/pts is refused
    # rather than followed, and the ptmx opened below is verified to be devpts anyway.
    return os.open(pts_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _bind_peer_on_console(peer: int, console_path: str) -> None:
    """Bind-mount the pty peer onto the console file, both reached by fd, never by pts name."""
    target = os.open(console_path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = os.fstat(target).st_mode
        # O_PATH|O_NOFOLLOW opens a symlink itself; mounting "onto" it would follow it.
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, "mount: console target is a symlink", console_path)
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, "mount: console target is a directory", console_path)
        try:
            mount(f"/proc/self/fd/{peer}", f"/proc/self/fd/{target}", None, MS_BIND)
        except OSError as exc:
            # Name the console, not the /proc/self/fd alias the call was made on.
            raise OSError(exc.errno, exc.strerror, console_path) from None
    finally:
        os.close(target)


def _pty_pair(pts_dir: str, size: tuple[int, int] | None, clear_onlcr: bool = False) -> tuple[int, int]:
    """Return (master, peer) from the devpts at ``pts_dir``, with the window size applied."""
    dir_fd = _open_pts_dir(pts_dir)
    try:
        master = open_ptmx_in(dir_fd)
    finally:
        os.close(dir_fd)
    try:
        peer = open_peer(master)
        try:
            if size is not None:
                set_winsize(peer, size[0], size[1])
            if clear_onlcr:
                # Before anything is written: output already queued would keep its "\r\n".
                tty_clear_onlcr(peer)
        except BaseException:
            os.close(peer)
            raise
    except BaseException:
        os.close(master)
        raise
    return master, peer


def _become_terminal_owner(peer: int) -> None:
    """setsid + TIOCSCTTY, then the peer becomes fds 0, 1 and 2 (dup2 clears CLOEXEC)."""
    try:
        make_controlling(peer)
        for fd in (0, 1, 2):
            os.dup2(peer, fd)
    finally:
        if peer > 2:
            os.close(peer)


def setup_console(
    console_sock_fd: int,
    size: tuple[int, int] | None,
    bind_console: bool = True,
    *,
    clear_onlcr: bool = False,
    pts_dir: str = "/dev/pts",
    console_path: str = "/dev/console",
) -> None:
    """Create the container's pty, hand the master to the client, make the peer our terminal.

    ``size`` is ``(rows, cols)`` from ``process.consoleSize`` (height, width).  ``pts_dir`` and
    ``console_path`` exist for tests; the init uses the defaults, which are container paths.
    Closes ``console_sock_fd`` in every case.
    """
    try:
        master, peer = _pty_pair(pts_dir, size, clear_onlcr)
        try:
            if bind_console:
                _bind_peer_on_console(peer, console_path)
            # The name is informative only (clients read the fd); /dev/pts/N as the container sees it.
            send_fd(console_sock_fd, b"/dev/pts/%d" % pty_number(master), master)
        except BaseException:
            os.close(peer)
            raise
        finally:
            # The init must not keep the master: the client owns it, and a held master would keep
            # the terminal open after the client closes it.
            os.close(master)
    finally:
        os.close(console_sock_fd)
    _become_terminal_owner(peer)
