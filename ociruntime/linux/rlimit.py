"""Resource limits (``process.rlimits``) applied with prlimit(2) on the calling process.

Spec values are uint64 and RLIM_INFINITY is 2**64-1, so the limits travel as c_ulonglong; the
range is checked here because ctypes would silently truncate anything larger.
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.linux.libc import LIBC

# Resource numbers from <asm-generic/resource.h> (the same on x86_64).
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}
RLIMIT_NAMES: dict[int, str] = {v: k for k, v in RLIMITS.items()}
RLIM_INFINITY = 2**64 - 1


class _RLimit(ctypes.Structure):
    _fields_ = [("rlim_cur", ctypes.c_ulonglong), ("rlim_max", ctypes.c_ulonglong)]


# LIBC[...] returns a private function object, so these argtypes do not leak to other modules.
_prlimit = LIBC["prlimit"]
_prlimit.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_RLimit), ctypes.POINTER(_RLimit)]
_prlimit.restype = ctypes.c_int


def _name(resource: int) -> str:
    return RLIMIT_NAMES.get(resource, f"rlimit {resource}")


def set_rlimit(resource: int, soft: int, hard: int) -> None:
    """Set soft and hard limits of ``resource`` for this process; OSError names the rlimit."""
    name = _name(resource)
    for label, value in (("soft", soft), ("hard", hard)):
        if isinstance(value, bool) or not 0 <= value <= RLIM_INFINITY:
            raise ValueError(f"{name}: {label} limit {value!r} out of range 0..{RLIM_INFINITY}")
    new = _RLimit(soft, hard)
    # pid 0 = the caller; prlimit (not setrlimit) so the 64-bit ABI is used without surprises.
    if _prlimit(0, resource, ctypes.byref(new), None) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"prlimit {name}: {os.strerror(err)}", name)


def get_rlimit(resource: int) -> tuple[int, int]:
    """Return (soft, hard) of ``resource`` for this process."""
    old = _RLimit()
    if _prlimit(0, resource, None, ctypes.byref(old)) == -1:
        err = ctypes.get_errno()
        name = _name(resource)
        raise OSError(err, f"prlimit {name}: {os.strerror(err)}", name)
    return old.rlim_cur, old.rlim_max
