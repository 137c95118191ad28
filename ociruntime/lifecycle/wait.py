"""Waiting for a process we are the (sub)reaper of, and its status as a shell reports it:
shared by the foreground `run` and `exec`, which must not pay for each other's imports."""

from __future__ import annotations

import os

from ociruntime.errors import OCIError


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128 + signal number."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


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
