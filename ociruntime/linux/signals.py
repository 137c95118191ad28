"""The signal reset done right before the container's execve (names live in signames.py).

CPython ignores SIGPIPE and SIGXFSZ, the caller may have ignored or blocked more, and ignored
dispositions plus the blocked mask survive execve(2) (signal(7)).  ``reset_all_signals`` puts
every signal back to SIG_DFL through libc sigaction(2) (Python's ``signal.signal`` only knows
Python's signals and keeps Python-level handlers) and empties the mask.
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.linux.libc import LIBC, syscall
from ociruntime.linux.signames import (  # noqa: F401 - re-exported for callers of this module
    NSIG,
    SIGKILL,
    SIGNALS,
    SIGPIPE,
    SIGRTMAX,
    SIGRTMIN,
    SIGSTOP,
    parse_signal,
    signal_name,
)

SIG_DFL = 0
SIG_SETMASK = 2



class _SigSet(ctypes.Structure):
    """glibc's sigset_t: 1024 bits."""

    _fields_ = [("val", ctypes.c_ulong * 16)]


class _KernelSigAction(ctypes.Structure):
    """The kernel's struct sigaction on x86_64 (for the raw rt_sigaction syscall)."""

    _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]


SYS_RT_SIGACTION = 13


_sigprocmask = LIBC["sigprocmask"]
_sigprocmask.argtypes = [ctypes.c_int, ctypes.POINTER(_SigSet), ctypes.POINTER(_SigSet)]
_sigprocmask.restype = ctypes.c_int


def _raise_errno(call: str, what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{call}: {os.strerror(err)}", what)


def reset_signal(sig: int) -> None:
    """Put one signal back to SIG_DFL with the raw rt_sigaction syscall."""
    default = _KernelSigAction()  # zeroed: SIG_DFL, no flags, no restorer, empty mask
    if syscall(SYS_RT_SIGACTION, ctypes.c_int(sig), ctypes.byref(default), None, ctypes.c_size_t(8)) == -1:
        _raise_errno("rt_sigaction", f"signal {sig}")


def reset_all_signals(keep_ignored: tuple[int, ...] = ()) -> None:
    """Set every resettable signal to SIG_DFL and unblock all signals.

    Call it right before execve (or before a seccomp filter that may deny rt_sigaction): from
    here on a signal kills the child instead of running the Python handler, which is exactly what
    the container process should start with.  ``keep_ignored`` names signals left as they are
    for now (SIGPIPE while hooks still write to pipes); the caller resets them later.
    """
    # The raw rt_sigaction(2) syscall, not glibc's sigaction: glibc refuses the two signals it
    # reserves for NPTL (32, 33), yet a caller that ignores them (CI harnesses do) would pass the
    # "ignored" disposition through execve into the container.  Resetting them is safe here: the
    # process is single-threaded and about to exec.
    for sig in range(1, NSIG):
        if sig in (SIGKILL, SIGSTOP) or sig in keep_ignored:
            continue
        reset_signal(sig)
    empty = _SigSet()
    if _sigprocmask(SIG_SETMASK, ctypes.byref(empty), None) == -1:
        _raise_errno("sigprocmask", "SIG_SETMASK")
