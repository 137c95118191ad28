"""File descriptor hygiene for the runtime and the container init.

Nothing the caller leaked may reach the container (CVE-2024-21626): the runtime marks every fd
>= 3 close-on-exec when it starts, and the init closes everything but stdio and the preserved
fds right before execve.  close_range(2) (Linux 5.9) needs no /proc, which matters after
pivot_root; /proc/self/fd and finally a sweep up to the fd limit are the fallbacks (for
kernels before 5.9 only: the /proc fallback trusts whatever is mounted at /proc, so on such
kernels call these before pivot_root).
"""

from __future__ import annotations

import ctypes
import errno
import os

from ociruntime.linux.libc import SYS_CLOSE_RANGE, syscall

CLOSE_RANGE_CLOEXEC = 1 << 2  # <linux/close_range.h>
_FD_MAX = 0xFFFFFFFF  # close_range's "to the end" (~0U)


def _close_range(first: int, last: int, flags: int) -> bool:
    """close_range(first, last, flags); False when the kernel lacks it (ENOSYS/EINVAL for flags)."""
    ret = syscall(SYS_CLOSE_RANGE, ctypes.c_ulong(first), ctypes.c_ulong(last), ctypes.c_ulong(flags))
    if ret == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, f"close_range: {os.strerror(err)}", f"{first}-{last}")


def _open_fds() -> list[int] | None:
    """The fds open now per /proc/self/fd, or None when /proc is not usable."""
    try:
        # listdir's own directory fd is closed again when it returns; fds that vanish are skipped.
        return sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        return None


def _all_candidate_fds(lowfd: int) -> list[int]:
    fds = _open_fds()
    if fds is None:
        limit = os.sysconf("SC_OPEN_MAX")
        fds = list(range(lowfd, limit if limit > 0 else 65536))
    return [fd for fd in fds if fd >= lowfd]


def set_cloexec(fd: int, on: bool) -> None:
    """Set (``on``) or clear close-on-exec on ``fd``."""
    os.set_inheritable(fd, not on)


def cloexec_all_from(lowfd: int = 3) -> None:
    """Mark every open fd >= ``lowfd`` close-on-exec."""
    if _close_range(lowfd, _FD_MAX, CLOSE_RANGE_CLOEXEC):
        return
    for fd in _all_candidate_fds(lowfd):
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise


def _close_gap(first: int, last: int) -> None:
    """Close fds first..last (inclusive); last may be _FD_MAX."""
    if first > last:
        return
    if _close_range(first, last, 0):
        return
    for fd in _all_candidate_fds(first):
        if fd > last:
            break
        try:
            os.close(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise


def close_fds_except(keep: set[int]) -> None:
    """Close every fd >= 3 that is not in ``keep`` (stdio is never touched)."""
    start = 3
    for fd in sorted(k for k in keep if k >= 3):
        _close_gap(start, fd - 1)
        start = fd + 1
    _close_gap(start, _FD_MAX)


def dup_to(old: int, new: int) -> None:
    """Make ``new`` a copy of ``old`` that survives execve (dup2 without O_CLOEXEC)."""
    if old == new:
        # dup2 to itself is a no-op that keeps FD_CLOEXEC, so clear it explicitly.
        os.set_inheritable(new, True)
        return
    os.dup2(old, new, inheritable=True)
