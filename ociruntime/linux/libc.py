"""The C library handle shared by every wrapper, loaded once before any fork.

ctypes loads libraries lazily by path: loading after pivot_root would open the image's libc,
so this module must be imported (and ``LIBC`` created) in the runtime before it forks.
"""

from __future__ import annotations

import ctypes
import os

# By soname, not ctypes.util.find_library: that runs `ldconfig -p` (~9 ms per start).
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)

# Raw syscall entry for calls glibc 2.36 does not wrap (pivot_root, openat2, capset, ...).
_syscall = LIBC.syscall
_syscall.restype = ctypes.c_long


def syscall(nr: int, *args: object) -> int:
    """Invoke syscall ``nr``; return the raw result (-1 on error, errno set)."""
    return _syscall(ctypes.c_long(nr), *args)


def check(ret: int, call: str, path: str | bytes | None = None, path2: str | bytes | None = None) -> int:
    """Raise ``OSError`` naming ``call`` (and ``path``) when ``ret`` is -1; else return it."""
    if ret == -1:
        err = ctypes.get_errno()
        msg = f"{call}: {os.strerror(err)}"
        if path2 is not None:
            raise OSError(err, msg, path, None, path2)
        raise OSError(err, msg, path)
    return ret


def fsencode(path: str | bytes) -> bytes:
    """Encode a path for a C call, refusing NUL bytes (which would silently truncate it)."""
    b = os.fsencode(path)
    if b"\0" in b:
        raise ValueError(f"path contains a NUL byte: {path!r}")
    return b


# x86_64 syscall numbers for calls without a glibc wrapper.
SYS_PIVOT_ROOT = 155
SYS_CAPGET = 125
SYS_CAPSET = 126
SYS_IOPRIO_SET = 251
SYS_SCHED_SETATTR = 314
SYS_OPENAT2 = 437
SYS_MOUNT_SETATTR = 442
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_KEYCTL = 250
SYS_SETNS = 308
SYS_PIDFD_OPEN = 434
SYS_PIDFD_SEND_SIGNAL = 424
SYS_CLOSE_RANGE = 436
SYS_SECCOMP = 317
SYS_BPF = 321
