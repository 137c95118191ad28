"""Process credentials: supplementary groups and real/effective/saved uid and gid.

Called by the container init after the rootfs is ready and before capabilities are narrowed.
The ids are range-checked before reaching ctypes: c_uint would silently truncate 2**32 to 0
(root), and 2**32-1 means "leave unchanged" to setres[ug]id(2).
"""

from __future__ import annotations

import ctypes

from ociruntime.linux.libc import LIBC, check

_ID_MAX = 2**32 - 2

# LIBC[...] returns a private function object, so these argtypes do not leak to other modules.
_setgroups = LIBC["setgroups"]
_setgroups.argtypes = [ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32)]
_setgroups.restype = ctypes.c_int
_setresuid = LIBC["setresuid"]
_setresuid.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
_setresuid.restype = ctypes.c_int
_setresgid = LIBC["setresgid"]
_setresgid.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
_setresgid.restype = ctypes.c_int


def _check_id(kind: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _ID_MAX:
        raise ValueError(f"{kind} {value!r} out of range 0..{_ID_MAX}")


def set_groups(gids: list[int]) -> None:
    """Replace the supplementary group list (setgroups(2)); an empty list clears it."""
    for gid in gids:
        _check_id("gid", gid)
    arr = (ctypes.c_uint32 * max(len(gids), 1))(*gids)
    check(_setgroups(len(gids), arr), "setgroups", ",".join(map(str, gids)))


def set_ids(uid: int, gid: int) -> None:
    """Set real, effective and saved gid, then uid.

    The gid goes first: once the uid is no longer 0 the process lacks CAP_SETGID (unless
    PR_SET_KEEPCAPS is set, which keeps only the permitted set, not the effective one).
    """
    _check_id("uid", uid)
    _check_id("gid", gid)
    check(_setresgid(gid, gid, gid), "setresgid", str(gid))
    check(_setresuid(uid, uid, uid), "setresuid", str(uid))
