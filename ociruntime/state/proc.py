"""Identity of a process across time: pid plus start time from ``/proc/<pid>/stat``.

A pid alone is not an identity: once the init exits, the number can be reused by any process on
the host.  Every command that signals or inspects the init first checks that the start time
recorded at create still matches, so a reused pid is never signalled.
"""

from __future__ import annotations

import os


def read_stat(pid: int) -> tuple[str, int] | None:
    """Return (state letter, start time in clock ticks) of ``pid``, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return rest[0].decode(), int(rest[19])


def start_time(pid: int) -> int | None:
    st = read_stat(pid)
    return None if st is None else st[1]


def is_alive(pid: int, started: int) -> bool:
    """True when ``pid`` exists, is not a zombie, and is the same process (same start time)."""
    if pid <= 0:
        return False
    st = read_stat(pid)
    return st is not None and st[1] == started and st[0] not in ("Z", "X")


def pidfd_for(pid: int, started: int) -> int | None:
    """Open a pidfd for ``pid`` only if it is still the process that started at ``started``.

    Checking the start time *after* pidfd_open closes the race: the pidfd pins the process,
    so if the number had been reused before the open, the start time no longer matches.
    """
    if pid <= 0:
        return None  # never pidfd_open(0): a record without an init has nothing to signal
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if not is_alive(pid, started):
        os.close(fd)
        return None
    return fd


def exe_identity(pid: int) -> list[int] | None:
    """[st_dev, st_ino] of the executable ``pid`` runs; None if unknown (gone, no permission)."""
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def exec_done(pid: int, init_exe: list[int] | None) -> bool:
    """Whether the init has exec'd the user process: it no longer runs the executable it ran
    while waiting for ``start`` (recorded at create as ``init_exe``).  The init never execs the
    runtime's interpreter (init/process.py refuses it), so a changed identity means execve.
    False when unknown (no recorded identity, or /proc unreadable)."""
    if not init_exe:
        return False
    now = exe_identity(pid)
    return now is not None and now != list(init_exe)
