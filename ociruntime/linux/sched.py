"""Scheduling attributes of the container process: policy (sched_setattr), I/O priority, CPU affinity.

Implements ``process.scheduler`` and ``process.ioPriority`` of config-linux.md and the
``execCPUAffinity`` cpu lists.  Names are mapped to numbers here so the parent can validate a
spec by calling the same tables before fork.
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.linux.libc import SYS_IOPRIO_SET, SYS_SCHED_SETATTR, check, syscall

# <linux/sched.h>; SCHED_ISO is reserved but unimplemented upstream (the kernel answers EINVAL).
SCHED_POLICIES: dict[str, int] = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
# <uapi/linux/sched.h> sched_attr.sched_flags.
SCHED_FLAGS: dict[str, int] = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
# <linux/ioprio.h>.
IOPRIO_CLASSES: dict[str, int] = {
    "IOPRIO_CLASS_RT": 1,
    "IOPRIO_CLASS_BE": 2,
    "IOPRIO_CLASS_IDLE": 3,
}
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13


class SchedAttr(ctypes.Structure):
    """struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes, with the util clamp fields)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


def _in_range(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} {value!r} out of range {low}..{high}")


def sched_attr(
    policy: str, priority: int, nice: int, flags: list[str], runtime: int, deadline: int, period: int
) -> SchedAttr:
    """Build the sched_attr for a spec scheduler entry; ValueError for unknown names or ranges."""
    if policy not in SCHED_POLICIES:
        raise ValueError(f'unknown scheduler policy "{policy}"')
    mask = 0
    for flag in flags:
        if flag not in SCHED_FLAGS:
            raise ValueError(f'unknown scheduler flag "{flag}"')
        mask |= SCHED_FLAGS[flag]
    _in_range("scheduler nice", nice, -(2**31), 2**31 - 1)
    _in_range("scheduler priority", priority, 0, 2**31 - 1)
    for what, value in (("runtime", runtime), ("deadline", deadline), ("period", period)):
        _in_range(f"scheduler {what}", value, 0, 2**64 - 1)
    return SchedAttr(
        size=ctypes.sizeof(SchedAttr),
        sched_policy=SCHED_POLICIES[policy],
        sched_flags=mask,
        sched_nice=nice,
        sched_priority=priority,
        sched_runtime=runtime,
        sched_deadline=deadline,
        sched_period=period,
    )


def set_scheduler(
    policy: str, priority: int, nice: int, flags: list[str], runtime: int, deadline: int, period: int
) -> None:
    """Apply ``process.scheduler`` to the calling thread with sched_setattr(2)."""
    attr = sched_attr(policy, priority, nice, flags, runtime, deadline, period)
    # pid 0 = the caller; the last argument (flags) must be 0 per sched_setattr(2).
    check(syscall(SYS_SCHED_SETATTR, 0, ctypes.byref(attr), 0), "sched_setattr", policy)


def ioprio_value(cls: str, priority: int) -> int:
    """Encode ``process.ioPriority`` as the ioprio_set(2) value (class << 13 | level)."""
    if cls not in IOPRIO_CLASSES:
        raise ValueError(f'unknown io priority class "{cls}"')
    _in_range("io priority", priority, 0, 7)
    return (IOPRIO_CLASSES[cls] << IOPRIO_CLASS_SHIFT) | priority


def set_ioprio(cls: str, priority: int) -> None:
    """Set the I/O scheduling class and level of the calling process (ioprio_set(2))."""
    value = ioprio_value(cls, priority)
    check(syscall(SYS_IOPRIO_SET, IOPRIO_WHO_PROCESS, 0, value), "ioprio_set", f"{cls} {priority}")


def _is_number(s: str) -> bool:
    s = s.strip()
    return s.isascii() and s.isdigit()


def parse_cpu_list(s: str) -> set[int]:
    """Parse a cpuset list such as ``"0-3,7"`` (whitespace around items allowed) into a set."""
    cpus: set[int] = set()
    for item in s.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f'invalid cpu list "{s}"')
        low_s, sep, high_s = item.partition("-")
        if not _is_number(low_s) or (sep and not _is_number(high_s)):
            raise ValueError(f'invalid cpu list "{s}"')
        low = int(low_s)
        high = int(high_s) if sep else low
        if high < low:
            raise ValueError(f'invalid cpu range "{item}" in "{s}"')
        cpus.update(range(low, high + 1))
    return cpus


def format_cpu_list(cpus: set[int]) -> str:
    """Render a set of cpus back into the compact ``"0-3,7"`` form."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def set_affinity(cpus: set[int]) -> None:
    """Pin the calling process to ``cpus``; OSError names the cpu list."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        err = exc.errno or 0
        raise OSError(err, f"sched_setaffinity: {os.strerror(err)}", format_cpu_list(cpus)) from None
    except ValueError as exc:
        # os raises ValueError for negative or huge cpu numbers; keep the list in the message.
        raise ValueError(f"invalid cpu list {format_cpu_list(cpus)!r}: {exc}") from None
