"""openat2(2) with RESOLVE_* flags: path resolution the kernel keeps inside a directory.

``RESOLVE_IN_ROOT`` treats the dirfd as "/" for the whole lookup (absolute symlinks and ".."
stay inside it), ``RESOLVE_NO_MAGICLINKS`` refuses /proc/<pid>/fd-style jumps.  These are the
tools against the symlink-swap CVEs (CVE-2019-18837, CVE-2021-30465, CVE-2024-45310).
"""

from __future__ import annotations

import ctypes
import errno
import os

from ociruntime.linux.libc import SYS_OPENAT2, check, fsencode, syscall

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20

# openat2 answers EAGAIN when a rename elsewhere in the filesystem races a ".." lookup under
# RESOLVE_IN_ROOT/BENEATH (it cannot prove the walk stayed inside); retrying is the documented fix.
_EAGAIN_RETRIES = 32


class OpenHow(ctypes.Structure):
    """``struct open_how`` (OPEN_HOW_SIZE_VER0, 24 bytes)."""

    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def openat2(
    dirfd: int, path: str, flags: int, resolve: int, mode: int = 0, *, name: str | None = None
) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``resolve`` restrictions.

    ``name`` is the path to report in errors (e.g. the container path rather than the relative one).
    """
    # The kernel rejects a non-zero mode unless the call can create a file.
    creates = bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE
    how = OpenHow(flags, mode if creates else 0, resolve)
    raw = fsencode(path)
    for _ in range(_EAGAIN_RETRIES):
        ret = syscall(
            SYS_OPENAT2,
            ctypes.c_int(dirfd),
            ctypes.c_char_p(raw),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if ret != -1 or ctypes.get_errno() != errno.EAGAIN:
            break
    return check(ret, "openat2", name if name is not None else path)
