"""Thin wrappers around prctl(2) for the process attributes the container init sets.

All calls go through the ``LIBC`` handle loaded before fork, so they are safe in a forked child
after pivot_root.  ``caps`` uses :func:`prctl` for the capability-related options.
"""

from __future__ import annotations

import ctypes

from ociruntime.linux.libc import LIBC, check

# Option numbers from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# The kernel keeps at most 16 bytes of comm, including the terminating NUL (prctl(2) PR_SET_NAME).
TASK_COMM_LEN = 16

# LIBC[...] returns a private function object, so these argtypes do not leak to other modules.
_prctl = LIBC["prctl"]
_prctl.restype = ctypes.c_int


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0, what: str = "") -> int:
    """Call prctl(2) with unsigned long arguments; raise OSError naming ``what`` (or the option)."""
    # prctl is variadic: pass full-width unsigned longs so no argument is left half-initialised.
    ret = _prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(arg4),
        ctypes.c_ulong(arg5),
    )
    return check(ret, f"prctl({what or option})")


def set_no_new_privs() -> None:
    """Set no_new_privs: execve can no longer grant privileges (setuid bits, file caps)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="PR_SET_NO_NEW_PRIVS")


def get_no_new_privs() -> bool:
    """Return whether no_new_privs is set for the calling thread."""
    return prctl(PR_GET_NO_NEW_PRIVS, what="PR_GET_NO_NEW_PRIVS") == 1


def set_dumpable(on: bool) -> None:
    """Set or clear the dumpable flag (non-dumpable hides /proc/<pid> internals from others)."""
    prctl(PR_SET_DUMPABLE, 1 if on else 0, what="PR_SET_DUMPABLE")


def set_pdeathsig(sig: int) -> None:
    """Ask for ``sig`` when the parent thread dies (0 clears it); reset by execve of setuid files."""
    if not 0 <= sig < 65:
        raise ValueError(f"invalid parent death signal {sig}")
    prctl(PR_SET_PDEATHSIG, sig, what="PR_SET_PDEATHSIG")


def set_child_subreaper(on: bool) -> None:
    """Become (or stop being) the reaper of orphaned descendants."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, what="PR_SET_CHILD_SUBREAPER")


def set_name(name: bytes) -> None:
    """Set the thread's comm name; the kernel silently truncates it to 15 bytes."""
    if b"\0" in name:
        raise ValueError(f"process name contains a NUL byte: {name!r}")
    buf = ctypes.create_string_buffer(name[: TASK_COMM_LEN - 1], TASK_COMM_LEN)
    prctl(PR_SET_NAME, ctypes.addressof(buf), what="PR_SET_NAME")
