"""Waiting for a process we are the (sub)reaper of, passing signals on to it, and its status as
a shell reports it: shared by the foreground `run` and `exec` (and create's error texts), which
must not pay for each other's imports."""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os

from ociruntime.errors import OCIError, suppress


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128 + signal number."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def status_text(status: int) -> str:
    """A wait status in words, for error messages."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


# Signals a foreground `run` or `exec` passes on to the process (runc's signal forwarding).
FORWARD = (_signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM, _signal.SIGUSR1,
           _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT, _signal.SIGALRM)


class SignalForwarder:
    """runc's signal forwarding for a foreground run or exec: what we receive goes to the
    process, queued until its pid is known (install before fork, target once it runs)."""

    def __init__(self, skip_winch: bool) -> None:
        # With our own console the proxy resizes the pty on SIGWINCH itself.
        self.signals = [s for s in FORWARD if not (skip_winch and s == _signal.SIGWINCH)]
        self.old: dict[int, object] = {}
        self.pid = 0
        self.pending: list[int] = []

    def _handle(self, signum: int, _frame: object) -> None:
        if self.pid:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)
        else:
            self.pending.append(signum)

    def install(self) -> None:
        for s in self.signals:
            self.old[s] = _signal.signal(s, self._handle)

    def target(self, pid: int) -> None:
        self.pid = pid
        while self.pending:
            with suppress(ProcessLookupError):
                os.kill(pid, self.pending.pop(0))

    def restore(self) -> None:
        for s, h in self.old.items():
            _signal.signal(s, h)  # type: ignore[arg-type]
        self.old = {}


def wait_child(pid: int, what: str = "container init") -> int:
    """Wait for ``pid`` (our child: we are its subreaper); reap other orphans on the way."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise OCIError(f"{what} {pid} is not our child") from None
        except InterruptedError:
            continue
        if got == pid:
            return status
