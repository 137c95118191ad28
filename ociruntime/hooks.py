"""OCI lifecycle hooks: parse ``config.hooks`` and run one hook list.

runtime-spec config.md "POSIX-platform Hooks" and runtime.md "Lifecycle": each hook is executed
with the container's state JSON on stdin, exactly its own ``env`` (never ``os.environ``), ``args``
as argv and an optional ``timeout`` in seconds.  The first failing hook aborts the list.

``run_hooks`` also runs inside the container init (``createContainer`` before pivot_root,
``startContainer`` right before the user process's execve), where imports are blocked and the
process must stay single-threaded.  So it uses only modules imported at the top of this file,
spawns with ``os.fork`` + ``os.execve`` (no ``subprocess``, which imports lazily and may start
threads) and waits on a pidfd with ``poll`` instead of sleeping in a loop.

Wire format of the child's exec-failure report: the child writes its errno as a 4-byte native
int to a CLOEXEC pipe; EOF without data means ``execve`` succeeded (the ``subprocess`` trick).
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import errno
import fcntl
import os
import select
import struct
import time

from ociruntime import jsonio
from ociruntime.errors import ConfigError, HookError
from ociruntime.linux.fds import close_fds_except
from ociruntime.linux.signals import reset_all_signals
from ociruntime.linux.signames import go_signal_text
from ociruntime.record import dataclass

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

HOOK_KINDS: tuple[str, ...] = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

# How much of each of the hook's stdout and stderr goes into the error message, and the read
# chunk size while draining them (the hook must never block on a full pipe).
_EXCERPT = 512
_CHUNK = 65536
_ERRNO = struct.Struct("=i")


@dataclass(frozen=True)
class Hook:
    """One validated hook entry from config.json."""

    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None


# --------------------------------------------------------------------------------------------
# parsing


def _check_string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string")
    if "\0" in value:
        raise ConfigError(f"{where}: contains a nul byte")
    return value


def _check_string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be an array of strings")
    return tuple(_check_string(item, f"{where}[{i}]") for i, item in enumerate(value))


def _parse_hook(entry: object, where: str) -> Hook:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object")
    if "path" not in entry:
        raise ConfigError(f"{where}.path: is required")
    path = _check_string(entry["path"], f"{where}.path")
    # config.md extends execv's path: it MUST be absolute (a relative one would be looked up in
    # whatever cwd the runtime happens to have).
    if not path.startswith("/"):
        raise ConfigError(f"{where}.path: must be an absolute path, got {path!r}")
    args = _check_string_list(entry.get("args"), f"{where}.args")
    env = _check_string_list(entry.get("env"), f"{where}.env")
    for i, item in enumerate(env):
        if item.find("=") < 1:
            raise ConfigError(f"{where}.env[{i}]: must be NAME=VALUE, got {item!r}")
    timeout = entry.get("timeout")
    # bool is an int subclass: reject it explicitly so `true` is not a 1-second timeout.
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise ConfigError(f"{where}.timeout: must be an integer")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"{where}.timeout: must be greater than zero, got {timeout}")
    return Hook(path=path, args=args, env=env, timeout=timeout)


def parse_hooks(config: dict) -> dict[str, tuple[Hook, ...]]:
    """Validate ``config["hooks"]``; return every hook kind mapped to its (possibly empty) list.

    Unknown hook kinds are ignored, as the spec asks of unknown properties.
    """
    raw = config.get("hooks")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("hooks: must be an object")
    result: dict[str, tuple[Hook, ...]] = {}
    for kind in HOOK_KINDS:
        entries = raw.get(kind)
        if entries is None:
            result[kind] = ()
            continue
        if not isinstance(entries, list):
            raise ConfigError(f"hooks.{kind}: must be an array")
        result[kind] = tuple(_parse_hook(e, f"hooks.{kind}[{i}]") for i, e in enumerate(entries))
    return result


# --------------------------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class _Prepared:
    """Everything the forked child needs, encoded before fork so the child only does syscalls."""

    path: bytes
    argv: tuple[bytes, ...]
    env: dict[bytes, bytes]
    cwd: bytes | None


def _prepare(hook: Hook, cwd: str | None) -> _Prepared:
    path = os.fsencode(hook.path)
    argv = tuple(os.fsencode(a) for a in hook.args) or (path,)
    env: dict[bytes, bytes] = {}
    # os.execve takes a mapping; a repeated name keeps its last value, as Go's os/exec (runc) does.
    for item in hook.env:
        name, _, value = os.fsencode(item).partition(b"=")
        env[name] = value
    return _Prepared(path, argv, env, os.fsencode(cwd) if cwd is not None else None)


def _pipe_above_stdio() -> tuple[int, int]:
    """A CLOEXEC pipe whose ends are both >= 3.

    If the runtime was started with fd 0/1/2 closed, pipe(2) hands out those numbers and the
    child's dup2 onto 0 and 1 would clobber one end with the other.
    """
    ends = []
    for fd in os.pipe():
        if fd < 3:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = moved
        ends.append(fd)
    return ends[0], ends[1]


def _child(prep: _Prepared, stdin_r: int, stdout_w: int, stderr_w: int, err_w: int) -> None:
    """Runs in the forked hook process; never returns (execve or _exit)."""
    try:
        # Python ignores SIGPIPE/SIGXFSZ and ignored dispositions survive execve (signal(7));
        # a blocked mask survives too.  Reset both first so nothing below runs with odd signals.
        reset_all_signals()
        # os.dup2 makes the target inheritable, so 0-2 survive execve.  stderr is captured too,
        # as runc does: a failure message quotes both.
        os.dup2(stdin_r, 0)
        os.dup2(stdout_w, 1)
        os.dup2(stderr_w, 2)
        # Nothing of the runtime's beyond stdio may reach the hook (CVE-2024-21626 class);
        # err_w is CLOEXEC and must stay open until execve to report a failure.
        close_fds_except({err_w})
        if prep.cwd is not None:
            os.chdir(prep.cwd)
        os.execve(prep.path, prep.argv, prep.env)
    except OSError as exc:
        code = exc.errno or errno.EINVAL
    except BaseException:
        code = errno.EINVAL
    try:
        os.write(err_w, _ERRNO.pack(code))
    finally:
        os._exit(127)


def _read_exec_error(err_r: int) -> int:
    """Block until the child exec'd (EOF) or reported an errno; return that errno or 0."""
    data = b""
    while True:
        chunk = os.read(err_r, _ERRNO.size - len(data))
        if not chunk:
            break
        data += chunk
        if len(data) == _ERRNO.size:
            break
    return _ERRNO.unpack(data)[0] if len(data) == _ERRNO.size else 0


class _Io:
    """The parent's side of the hook's stdin, stdout and stderr, driven by one poll loop."""

    def __init__(self, stdin_w: int, stdout_r: int, stderr_r: int, payload: bytes) -> None:
        self.stdin_w: int | None = stdin_w
        # Each open output pipe and what was kept of it; stdout and stderr, in that order.
        self.outputs: dict[int, bytearray] = {stdout_r: bytearray(), stderr_r: bytearray()}
        self.kept = list(self.outputs.values())
        self.pending = memoryview(payload)
        for fd in (stdin_w, stdout_r, stderr_r):
            os.set_blocking(fd, False)
        if not payload:
            self.close_stdin()

    def register(self, poller: select.poll) -> None:
        if self.stdin_w is not None:
            poller.register(self.stdin_w, select.POLLOUT)
        for fd in self.outputs:
            poller.register(fd, select.POLLIN)

    def close_stdin(self) -> None:
        if self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def feed(self, poller: select.poll) -> None:
        """Write what the pipe takes; a hook that exits or closes stdin early is not an error."""
        assert self.stdin_w is not None
        try:
            written = os.write(self.stdin_w, self.pending)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            written = len(self.pending)
        self.pending = self.pending[written:]
        if not self.pending:
            poller.unregister(self.stdin_w)
            self.close_stdin()

    def drain(self, fd: int, poller: select.poll | None) -> None:
        """Read what is available; keep only the excerpt but never let the pipe fill up."""
        kept = self.outputs[fd]
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                if poller is not None:
                    poller.unregister(fd)
                del self.outputs[fd]
                os.close(fd)
                return
            room = _EXCERPT - len(kept)
            if room > 0:
                kept += chunk[:room]

    def drain_all(self) -> None:
        for fd in list(self.outputs):
            self.drain(fd, None)

    def close(self) -> None:
        self.close_stdin()
        for fd in self.outputs:
            os.close(fd)
        self.outputs.clear()

    def excerpts(self) -> tuple[str, str]:
        """stdout and stderr, each on one line: our errors are one line (Go's keep newlines)."""
        out, err = (" ".join(bytes(k).decode("utf-8", "replace").split("\n")).strip() for k in self.kept)
        return out, err


def _wait(pidfd: int, io: _Io, timeout: int | None) -> bool:
    """Pump stdin/stdout/stderr until the hook exits; return False if the deadline passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    io.register(poller)
    while True:
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait_ms = max(1, int(left * 1000) + 1)
        for fd, _ in poller.poll(wait_ms):
            if fd == pidfd:
                # A pidfd polls readable once the process has exited (pidfd_open(2)).
                io.drain_all()
                return True
            if fd == io.stdin_w:
                io.feed(poller)
            elif fd in io.outputs:
                io.drain(fd, poller)


def _describe_status(status: int) -> str:
    """A wait status as Go's os.ProcessState.String() prints it (runc's hook errors quote it)."""
    if os.WIFSIGNALED(status):
        text = f"signal: {go_signal_text(os.WTERMSIG(status))}"
    else:
        text = f"exit status {os.WEXITSTATUS(status)}"
    return text + " (core dumped)" if os.WCOREDUMP(status) else text


def _run_one(prep: _Prepared, hook: Hook, payload: bytes) -> str | None:
    """Run one hook to completion; return a failure description, or None on success.

    The texts are runc's (libcontainer/configs Command.Run, which quotes Go's errors):
    ``fork/exec PATH: REASON``, ``exit status 1, stdout: ..., stderr: ...``,
    ``signal: killed, stdout: ..., stderr: ...``, ``hook ran past specified timeout of 1.0s``.
    """
    stdin_r, stdin_w = _pipe_above_stdio()
    stdout_r, stdout_w = _pipe_above_stdio()
    stderr_r, stderr_w = _pipe_above_stdio()
    err_r, err_w = _pipe_above_stdio()
    ends = (stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w, err_r, err_w)
    try:
        pid = os.fork()
    except BaseException:
        for fd in ends:
            os.close(fd)
        raise
    if pid == 0:
        _child(prep, stdin_r, stdout_w, stderr_w, err_w)
    for fd in (stdin_r, stdout_w, stderr_w, err_w):
        os.close(fd)
    io = _Io(stdin_w, stdout_r, stderr_r, payload)
    reaped = False
    pidfd = -1
    try:
        exec_errno = _read_exec_error(err_r)
        if exec_errno:
            os.waitpid(pid, 0)
            reaped = True
            return f"fork/exec {hook.path}: {os.strerror(exec_errno).lower()}"
        pidfd = os.pidfd_open(pid)
        if not _wait(pidfd, io, hook.timeout):
            return f"hook ran past specified timeout of {hook.timeout:.1f}s"
        _, status = os.waitpid(pid, 0)
        reaped = True
        if status == 0:
            return None
        stdout, stderr = io.excerpts()
        return f"{_describe_status(status)}, stdout: {stdout}, stderr: {stderr}"
    finally:
        if not reaped:
            # Timeout or an exception in the parent: never leave the hook running or a zombie.
            os.kill(pid, _signal.SIGKILL)
            os.waitpid(pid, 0)
        if pidfd >= 0:
            os.close(pidfd)
        os.close(err_r)
        io.close()


def run_hooks(kind: str, hooks: Sequence[Hook], state: dict, *, cwd: str | None = None,
              on_error: Callable[[HookError], None] | None = None) -> None:
    """Run ``hooks`` in order with ``state`` as JSON on stdin; raise HookError on the first failure.

    Hooks are numbered from 0 in messages, worded as runc's ("error running prestart hook #0:
    exit status 1, stdout: ..., stderr: ...").  With ``on_error`` (poststart, poststop: "the
    remaining hooks and lifecycle continue"), each failure goes there and the next hook runs.
    """
    if not hooks:
        return
    payload = jsonio.dumps(state).encode()
    prepared = [_prepare(hook, cwd) for hook in hooks]
    # A hook that exits without reading stdin makes our write fail with EPIPE; the init child may
    # already have reset SIGPIPE to its default (terminate), so ignore it for the duration.
    previous = _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    try:
        for i, (hook, prep) in enumerate(zip(hooks, prepared, strict=True)):
            failure = _run_one(prep, hook, payload)
            if failure is not None:
                error = HookError(f"error running {kind} hook #{i}: {failure}")
                if on_error is None:
                    raise error
                on_error(error)
    finally:
        # None means a handler installed outside Python, which we cannot restore from here.
        if previous is not None:
            _signal.signal(_signal.SIGPIPE, previous)
