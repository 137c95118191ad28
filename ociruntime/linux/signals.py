"""Signal names and the signal reset done right before the container's execve.

CPython ignores SIGPIPE and SIGXFSZ, the caller may have ignored or blocked more, and ignored
dispositions plus the blocked mask survive execve(2) (signal(7)).  ``reset_all_signals`` puts
every signal back to SIG_DFL through libc sigaction(2) (Python's ``signal.signal`` only knows
Python's signals and keeps Python-level handlers) and empties the mask.
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.linux.libc import LIBC, syscall

NSIG = 65  # glibc's _NSIG on x86_64: signals 1..64.
SIGKILL = 9
SIGSTOP = 19
SIGRTMIN = 34  # as glibc reports it to programs (the kernel's 32 plus the reserved two)
SIGRTMAX = 64
SIG_DFL = 0
SIG_SETMASK = 2

# x86_64 Linux numbers, including the historical aliases runc/Go and kill(1) accept.
SIGNALS: dict[str, int] = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGIOT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPOLL": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
    "SIGRTMIN": SIGRTMIN,
    "SIGRTMAX": SIGRTMAX,
}


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


def reset_all_signals() -> None:
    """Set every resettable signal to SIG_DFL and unblock all signals.

    Call it last before execve: from here on a signal kills the child instead of running the
    Python handler, which is exactly what the container process should start with.
    """
    # The raw rt_sigaction(2) syscall, not glibc's sigaction: glibc refuses the two signals it
    # reserves for NPTL (32, 33), yet a caller that ignores them (CI harnesses do) would pass the
    # "ignored" disposition through execve into the container.  Resetting them is safe here: the
    # process is single-threaded and about to exec.
    default = _KernelSigAction()  # zeroed: SIG_DFL, no flags, no restorer, empty mask
    for sig in range(1, NSIG):
        if sig in (SIGKILL, SIGSTOP):
            continue
        if syscall(SYS_RT_SIGACTION, ctypes.c_int(sig), ctypes.byref(default), None,
                   ctypes.c_size_t(8)) == -1:
            _raise_errno("rt_sigaction", f"signal {sig}")
    empty = _SigSet()
    if _sigprocmask(SIG_SETMASK, ctypes.byref(empty), None) == -1:
        _raise_errno("sigprocmask", "SIG_SETMASK")


def _unknown(s: str) -> ValueError:
    return ValueError(f'unknown signal "{s}"')


def _parse_rt(name: str, raw: str) -> int:
    """Parse SIGRTMIN+n / SIGRTMAX-n (``name`` already upper-cased with the SIG prefix)."""
    for base, sign, value in (("SIGRTMIN", "+", SIGRTMIN), ("SIGRTMAX", "-", SIGRTMAX)):
        if name.startswith(base + sign):
            offset = name[len(base) + 1 :]
            if not (offset.isascii() and offset.isdigit()):
                raise _unknown(raw)
            sig = value + int(offset) if sign == "+" else value - int(offset)
            if SIGRTMIN <= sig <= SIGRTMAX:
                return sig
    raise _unknown(raw)


def parse_signal(s: str) -> int:
    """Parse a signal given as a number, a name with or without SIG, any case, or SIGRTMIN+n/SIGRTMAX-n."""
    if s.isascii() and s.isdigit():
        sig = int(s)
        if sig >= NSIG:
            raise _unknown(s)
        return sig
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in SIGNALS:
        return SIGNALS[name]
    if name.startswith(("SIGRTMIN+", "SIGRTMAX-")):
        return _parse_rt(name, s)
    raise _unknown(s)


def signal_name(sig: int) -> str:
    """Canonical name of a signal number (``SIGRTMIN+n`` for real-time ones)."""
    for name, num in SIGNALS.items():
        if num == sig and name not in ("SIGIOT", "SIGCLD", "SIGPOLL"):
            return name
    if SIGRTMIN < sig < SIGRTMAX:
        return f"SIGRTMIN+{sig - SIGRTMIN}"
    return str(sig)
