"""The parent/child channel: the only way ``create`` and ``exec`` talk to the processes they fork.

One ``SOCK_SEQPACKET`` socketpair, one JSON object per packet, file descriptors passed with
SCM_RIGHTS.  Both children (stage 1 and the init) inherit the same child end.  The order of
messages is fixed; :class:`Channel` checks it, so a confused peer is an error, not a hang::

    parent (create)                 stage 1                          init (pid 1 of the new pid ns)
      |---- fork -------------------->|
      |  join cgroup, set resources   |
      |==== "go" ===================> |
      |                               | setns(joined) ; unshare(user)
      |<=== "userns" ================ |    (only with a new user namespace)
      |  write uid_map / gid_map      |
      |==== "mapped" ===============> | setuid(0) ; unshare(others) ; time offsets
      |                               |---- fork ------------------------->|
      |<=== "pid" {pid} ============= |                                    |
      |  waitpid(stage 1)           exit(0)                                |
      |==== "init-go" =====================================================>|  (after "pid": the
      |                                                                    |   init never overtakes
      |                                                                    |   stage 1's message)
      |                                                                    |  mounts, /dev
      |<=== "hooks" ===================================================== |  (only if prestart/
      |  run prestart + createRuntime hooks on the host                    |   createRuntime hooks)
      |==== "hooks-done" =================================================>|  createContainer hooks,
      |                                                                    |  pivot_root, console,
      |<=== "seccomp-listener" + fd ===================================== |  (only for SCMP_ACT_NOTIFY)
      |<=== "ready" ===================================================== |  prepare: chdir, lookup,
      |  write state.json, pid file; exit                                  |  rlimits; block on
                                                                           |  exec.fifo; after start:
                                                                           |  become (fds, signals,
                                                                           |  seccomp, user, caps)

``exec`` uses the same channel with its own two children (:mod:`ociruntime.init.join`)::

    exec (parent)                      joiner (child 1)                    process (child 2)
      | verified pidfd + root fd of the init
      |---- fork ------------------------->| non-dumpable before any setns
      |  write joiner's pid to the cgroup  |
      |==== "go" =========================>|
      |                                    | oom_score_adj (inherited by the fork)
      |                                    | setns(pidfd, every namespace that differs)
      |                                    | fchdir(root fd) ; chroot(".")
      |                                    |---- fork ------------------------->|
      |<=== "pid" {pid} ================== | exit(0)                            |
      |  reap the joiner                                                        |
      |==== "go" ==============================================================>| (after "pid": the
      |                                                                         |  child never
      |<=== "seccomp-listener" + fd =========================================== |  overtakes it)
      |  hand it to the agent                (notify filters only)              | console, keyring
      |                                                                         | prepare, become
      |<=== EOF: execve closed the channel, or "error" ======================== | execve

Any child may send ``{"type": "error", "step", "errno", "msg"}`` instead of its next message; the
parent rebuilds it into an :class:`~ociruntime.errors.InitError`.  EOF before "ready" means a child
died; the parent reports that with the decoded wait status.
"""

from __future__ import annotations

import _socket  # the C module: socket.py imports enum and selectors (~2.5 ms)
import array
import os

from ociruntime import jsonio
from ociruntime.errors import InitError, describe_oserror

MAX_PACKET = 65536


class ChannelClosed(Exception):
    """The peer closed its end (EOF)."""


class ChannelTimeout(Exception):
    """No message within the channel's deadline."""


class Channel:
    """One end of the socketpair."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    @staticmethod
    def pair() -> tuple[Channel, Channel]:
        """(parent end, child end); both close-on-exec so no container process inherits them."""
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        return Channel(a), Channel(b)

    def set_deadline(self, seconds: float) -> None:
        """Bound every later receive on this end (the parent's; children wait without one)."""
        self.sock.settimeout(seconds)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, msg_type: str, fds: list[int] | None = None, **fields: object) -> None:
        data = jsonio.dumps({"type": msg_type, **fields}, compact=True).encode()
        if fds:
            anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            self.sock.sendmsg([data], anc)
        else:
            self.sock.sendall(data)

    def recv(self) -> tuple[dict, list[int]]:
        """Receive one message and any fds; raise ChannelClosed on EOF."""
        fds = array.array("i")
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(MAX_PACKET, _socket.CMSG_SPACE(16 * fds.itemsize))
        except TimeoutError:
            raise ChannelTimeout() from None
        for level, ctype, cdata in anc:
            if level == _socket.SOL_SOCKET and ctype == _socket.SCM_RIGHTS:
                fds.frombytes(cdata[: len(cdata) - (len(cdata) % fds.itemsize)])
        if not data:
            for fd in fds:
                os.close(fd)
            raise ChannelClosed()
        msg = jsonio.loads(data)
        if msg.get("type") == "error":
            for fd in fds:
                os.close(fd)
            raise InitError(msg.get("msg", "container init failed"), msg.get("errno", 0), msg.get("step", ""))
        return msg, list(fds)

    def expect(self, *types: str) -> tuple[dict, list[int]]:
        """Receive the next message, which must be one of ``types`` (the order check)."""
        msg, fds = self.recv()
        if msg.get("type") not in types:
            for fd in fds:
                os.close(fd)
            raise InitError(f"protocol error: expected {'/'.join(types)}, got {msg.get('type')!r}")
        return msg, fds

    def send_error(self, step: str, exc: BaseException) -> None:
        """Report a failure from a child, best effort (the parent may already be gone)."""
        if isinstance(exc, OSError):
            err, msg = exc.errno or 0, f"{step}: {describe_oserror(exc)}"
        else:
            err, msg = 0, f"{step}: {exc}"
        try:
            self.send("error", step=step, errno=err, msg=msg)
        except OSError:
            pass
