"""Read-only cgroup statistics in the JSON shape of runc's ``types.Stats`` (``runc events``).

Pure readers: each takes a cgroup directory and returns plain dicts, so tests can point them
at fake directories.  Sources and conversions follow runc 1.1 (libcontainer/cgroups/fs/*.go for
v1, fs2/*.go for v2) and the kernel's Documentation/admin-guide/cgroup-v1/*.rst and
cgroup-v2.rst:

- v1 cpu: cpuacct.usage (ns), cpuacct.usage_percpu, cpuacct.usage_all (per-cpu user/system
  ns), cpuacct.stat (USER_HZ ticks → ns) and cpu.stat throttling; v2: cpu.stat ``*_usec`` x 1000.
- v1 memory: memory.{usage,max_usage,limit}_in_bytes and failcnt for memory, memsw, kmem and
  kmem.tcp; v2: memory.current/max, memory.swap.current/max reported as memory+swap like v1.
- pids: pids.current and pids.max ("max" → 0, runc's "no limit").
- v1 blkio: the first group of files that exists (BFQ debug, BFQ, CFQ, throttle); v2: io.stat.
- hugetlb: one entry per page size found in the directory.

Fields that Go marks ``omitempty`` are left out when zero, so the JSON matches runc's output.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ociruntime.cgroups import files
from ociruntime.cgroups.base import UNIFIED
from ociruntime.errors import OCIError

U64_MAX = 2**64 - 1
# runc converts cpuacct.stat ticks with a fixed USER_HZ of 100 (system.GetClockTicks).
_CLOCK_TICKS = 100
_NS_PER_SEC = 1_000_000_000

_HUGETLB_V1 = re.compile(r"^hugetlb\.([0-9]+[KMGTP]B)\.usage_in_bytes$")
_HUGETLB_V2 = re.compile(r"^hugetlb\.([0-9]+[KMGTP]B)\.current$")


# --- file helpers -----------------------------------------------------------------------------
def _text(d: str, name: str) -> str | None:
    """The file's content, or None when it does not exist (controller or feature absent)."""
    if not files.exists(d, name):
        return None
    return files.read(d, name)


def _uint(d: str, name: str, max_value: int = U64_MAX) -> int:
    """One unsigned integer; "max" becomes ``max_value``; a missing file reads as 0."""
    text = _text(d, name)
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return max_value
    try:
        return int(text)
    except ValueError:
        raise OCIError(f"read {os.path.join(d, name)}: not an integer: {text!r}") from None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def _keyed(d: str, name: str) -> dict[str, int]:
    text = _text(d, name)
    return {} if text is None else parse_flat_keyed(text)


def _omit_zero(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Drop the ``omitempty`` members that hold Go zero values (0, empty list/map)."""
    return {k: v for k, v in d.items() if k not in keys or v}


def parse_list(text: str) -> list[int]:
    """A cpuset list like ``0-3,8,10-11`` → ``[0, 1, 2, 3, 8, 10, 11]``."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


# --- cpu ----------------------------------------------------------------------------------------
def _throttling(values: dict[str, int], time_key: str, time_scale: int) -> dict[str, int]:
    t = {
        "periods": values.get("nr_periods", 0),
        "throttledPeriods": values.get("nr_throttled", 0),
        "throttledTime": values.get(time_key, 0) * time_scale,
    }
    return _omit_zero(t, "periods", "throttledPeriods", "throttledTime")


def _usage(total: int, percpu: list[int], pkernel: list[int], puser: list[int], kernel: int,
           user: int) -> dict[str, Any]:
    u = {"total": total, "percpu": percpu, "percpu_kernel": pkernel, "percpu_user": puser,
         "kernel": kernel, "user": user}
    return _omit_zero(u, "total", "percpu", "percpu_kernel", "percpu_user")


def _percpu_modes(text: str | None) -> tuple[list[int], list[int]]:
    """cpuacct.usage_all: a "cpu user system" header, then one line per cpu (ns)."""
    if text is None:
        return [], []
    kernel, user = [], []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            user.append(int(parts[1]))
            kernel.append(int(parts[2]))
    return kernel, user


def cpu_v1(cpu_dir: str | None, cpuacct_dir: str | None) -> dict[str, Any]:
    """cpu usage from cpuacct, throttling from the cpu controller (either may be absent)."""
    usage = _usage(0, [], [], [], 0, 0)
    if cpuacct_dir is not None:
        ticks = _keyed(cpuacct_dir, "cpuacct.stat")
        percpu_text = _text(cpuacct_dir, "cpuacct.usage_percpu") or ""
        pkernel, puser = _percpu_modes(_text(cpuacct_dir, "cpuacct.usage_all"))
        usage = _usage(
            _uint(cpuacct_dir, "cpuacct.usage"),
            [int(x) for x in percpu_text.split()],
            pkernel,
            puser,
            ticks.get("system", 0) * _NS_PER_SEC // _CLOCK_TICKS,
            ticks.get("user", 0) * _NS_PER_SEC // _CLOCK_TICKS,
        )
    throttling: dict[str, int] = {}
    if cpu_dir is not None:
        throttling = _throttling(_keyed(cpu_dir, "cpu.stat"), "throttled_time", 1)
    return {"usage": usage, "throttling": throttling}


def cpu_v2(d: str) -> dict[str, Any]:
    s = _keyed(d, "cpu.stat")
    usage = _usage(s.get("usage_usec", 0) * 1000, [], [], [], s.get("system_usec", 0) * 1000,
                   s.get("user_usec", 0) * 1000)
    return {"usage": usage, "throttling": _throttling(s, "throttled_usec", 1000)}


# --- cpuset -------------------------------------------------------------------------------------
_CPUSET_FLAGS = ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
                 "memory_spread_slab", "memory_pressure", "sched_load_balance")


def cpuset_v1(d: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": [], "cpu_exclusive": 0, "mems": []}
    out.update({k: 0 for k in _CPUSET_FLAGS[1:]})
    out["sched_relax_domain_level"] = 0
    if d is None:
        return _omit_zero(out, "cpus", "mems")
    out["cpus"] = parse_list(_text(d, "cpuset.cpus") or "")
    out["mems"] = parse_list(_text(d, "cpuset.mems") or "")
    for flag in _CPUSET_FLAGS:
        out[flag] = _uint(d, f"cpuset.{flag}")
    level = (_text(d, "cpuset.sched_relax_domain_level") or "0").strip()
    out["sched_relax_domain_level"] = int(level)
    return _omit_zero(out, "cpus", "mems")


def cpuset_v2(d: str) -> dict[str, Any]:
    out = cpuset_v1(None)
    cpus = parse_list(_text(d, "cpuset.cpus.effective") or "")
    mems = parse_list(_text(d, "cpuset.mems.effective") or "")
    return _omit_zero({**out, "cpus": cpus, "mems": mems}, "cpus", "mems")


# --- memory -------------------------------------------------------------------------------------
def _entry(limit: int, usage: int, max_usage: int, failcnt: int) -> dict[str, int]:
    return _omit_zero({"limit": limit, "usage": usage, "max": max_usage, "failcnt": failcnt}, "usage", "max")


def _entry_v1(d: str, prefix: str) -> dict[str, int]:
    """``memory``/``memory.memsw``/``memory.kmem``/``memory.kmem.tcp`` usage files; zeros if absent."""
    if not files.exists(d, f"{prefix}.usage_in_bytes"):
        return _entry(0, 0, 0, 0)
    return _entry(_uint(d, f"{prefix}.limit_in_bytes"), _uint(d, f"{prefix}.usage_in_bytes"),
                  _uint(d, f"{prefix}.max_usage_in_bytes"), _uint(d, f"{prefix}.failcnt"))


def memory_v1(d: str) -> dict[str, Any]:
    raw = _keyed(d, "memory.stat")
    out = {"cache": raw.get("cache", 0), "usage": _entry_v1(d, "memory"),
           "swap": _entry_v1(d, "memory.memsw"), "kernel": _entry_v1(d, "memory.kmem"),
           "kernelTCP": _entry_v1(d, "memory.kmem.tcp"), "raw": raw}
    return _omit_zero(out, "cache", "raw")


def memory_v2(d: str) -> dict[str, Any]:
    raw = _keyed(d, "memory.stat")
    usage = _uint(d, "memory.current")
    limit = _uint(d, "memory.max")
    failcnt = _keyed(d, "memory.events").get("max", 0)
    mem = _entry(limit, usage, _uint(d, "memory.peak"), failcnt)
    swap = _entry(0, 0, 0, 0)
    if files.exists(d, "memory.swap.current"):
        # v1 reports swap as memory+swap; runc adds the memory values on v2 to stay comparable.
        swap_limit = _uint(d, "memory.swap.max")
        if swap_limit != U64_MAX:
            swap_limit = min(swap_limit + limit, U64_MAX)
        swap = _entry(swap_limit, _uint(d, "memory.swap.current") + usage, 0, 0)
    out = {"cache": raw.get("file", 0), "usage": mem, "swap": swap, "kernel": _entry(0, 0, 0, 0),
           "kernelTCP": _entry(0, 0, 0, 0), "raw": raw}
    return _omit_zero(out, "cache", "raw")


# --- pids ---------------------------------------------------------------------------------------
def pids_stats(d: str) -> dict[str, int]:
    """pids.current and pids.max (same files on v1 and v2; "max" is reported as 0)."""
    return _omit_zero({"current": _uint(d, "pids.current"), "limit": _uint(d, "pids.max", 0)},
                      "current", "limit")


# --- blkio / io ---------------------------------------------------------------------------------
_BLKIO_KEYS = {
    "io_service_bytes_recursive": "ioServiceBytesRecursive",
    "io_serviced_recursive": "ioServicedRecursive",
    "io_queued_recursive": "ioQueueRecursive",
    "io_service_time_recursive": "ioServiceTimeRecursive",
    "io_wait_time_recursive": "ioWaitTimeRecursive",
    "io_merged_recursive": "ioMergedRecursive",
    "time_recursive": "ioTimeRecursive",
    "sectors_recursive": "sectorsRecursive",
}
_DEBUG = ("sectors_recursive", "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
          "io_queued_recursive", "time_recursive", "io_serviced_recursive", "io_service_bytes_recursive")
# runc's order: the first group whose first file is present and non-empty wins.
_BLKIO_GROUPS: tuple[tuple[tuple[str, str], ...], ...] = (
    tuple((f"blkio.bfq.{n}", n) for n in _DEBUG),
    (("blkio.bfq.io_serviced_recursive", "io_serviced_recursive"),
     ("blkio.bfq.io_service_bytes_recursive", "io_service_bytes_recursive")),
    tuple((f"blkio.{n}", n) for n in _DEBUG),
    (("blkio.throttle.io_serviced_recursive", "io_serviced_recursive"),
     ("blkio.throttle.io_service_bytes_recursive", "io_service_bytes_recursive")),
    (("blkio.throttle.io_serviced", "io_serviced_recursive"),
     ("blkio.throttle.io_service_bytes", "io_service_bytes_recursive")),
)


def _blkio_entry(major: int, minor: int, op: str, value: int) -> dict[str, Any]:
    return _omit_zero({"major": major, "minor": minor, "op": op, "value": value},
                      "major", "minor", "op", "value")


def parse_blkio(text: str, where: str = "blkio") -> list[dict[str, Any]]:
    """``MAJ:MIN [Op] VALUE`` lines; the ``Total`` line is skipped."""
    out = []
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if not fields:
            continue
        if len(fields) == 2 and fields[0] == "Total":
            continue
        if len(fields) not in (3, 4):
            raise OCIError(f"read {where}: malformed line {line!r}")
        try:
            major, minor, value = int(fields[0]), int(fields[1]), int(fields[-1])
        except ValueError:
            raise OCIError(f"read {where}: malformed line {line!r}") from None
        out.append(_blkio_entry(major, minor, fields[2] if len(fields) == 4 else "", value))
    return out


def blkio_v1(d: str) -> dict[str, Any]:
    for group in _BLKIO_GROUPS:
        first = _text(d, group[0][0])
        if not first:
            continue
        out: dict[str, Any] = {}
        for fname, key in group:
            text = _text(d, fname)
            if text is None:
                raise OCIError(f"read {os.path.join(d, fname)}: no such file or directory")
            out[_BLKIO_KEYS[key]] = parse_blkio(text, os.path.join(d, fname))
        return {k: v for k, v in out.items() if v}
    return {}


def io_v2(d: str) -> dict[str, Any]:
    """io.stat ``MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...`` in v1's tables and op names."""
    by_bytes: list[dict[str, Any]] = []
    by_ios: list[dict[str, Any]] = []
    table = {"rbytes": (by_bytes, "Read"), "wbytes": (by_bytes, "Write"), "rios": (by_ios, "Read"),
             "wios": (by_ios, "Write")}
    for line in (_text(d, "io.stat") or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        for item in parts[1:]:
            key, _, value = item.partition("=")
            if key in table and value.isdigit():
                dest, op = table[key]
                dest.append(_blkio_entry(int(major), int(minor), op, int(value)))
    return _omit_zero({"ioServiceBytesRecursive": by_bytes, "ioServicedRecursive": by_ios},
                      "ioServiceBytesRecursive", "ioServicedRecursive")


# --- hugetlb ------------------------------------------------------------------------------------
def hugetlb_v1(d: str) -> dict[str, dict[str, int]]:
    out = {}
    for name in sorted(os.listdir(d)):
        m = _HUGETLB_V1.match(name)
        if m:
            size = m.group(1)
            entry = {"usage": _uint(d, name), "max": _uint(d, f"hugetlb.{size}.max_usage_in_bytes"),
                     "failcnt": _uint(d, f"hugetlb.{size}.failcnt")}
            out[size] = _omit_zero(entry, "usage", "max")
    return out


def hugetlb_v2(d: str) -> dict[str, dict[str, int]]:
    out = {}
    for name in sorted(os.listdir(d)):
        m = _HUGETLB_V2.match(name)
        if m:
            size = m.group(1)
            entry = {"usage": _uint(d, name), "failcnt": _keyed(d, f"hugetlb.{size}.events").get("max", 0)}
            out[size] = _omit_zero(entry, "usage")
    return out


# --- the whole picture --------------------------------------------------------------------------
def stats_v1(paths: dict[str, str]) -> dict[str, Any]:
    """Stats of a v1 (or hybrid) container from its per-controller directories."""

    def present(name: str) -> str | None:
        d = paths.get(name)
        return d if d is not None and os.path.isdir(d) else None

    mem, pids, blkio, huge = present("memory"), present("pids"), present("blkio"), present("hugetlb")
    return _assemble(
        cpu_v1(present("cpu"), present("cpuacct")),
        cpuset_v1(present("cpuset")),
        memory_v1(mem) if mem else _memory_empty(),
        pids_stats(pids) if pids else {},
        blkio_v1(blkio) if blkio else {},
        hugetlb_v1(huge) if huge else {},
    )


def stats_v2(d: str) -> dict[str, Any]:
    """Stats of a pure-v2 container from its one unified directory."""
    return _assemble(cpu_v2(d), cpuset_v2(d), memory_v2(d), pids_stats(d), io_v2(d), hugetlb_v2(d))


def _memory_empty() -> dict[str, Any]:
    empty = _entry(0, 0, 0, 0)
    return {"usage": empty, "swap": dict(empty), "kernel": dict(empty), "kernelTCP": dict(empty)}


def _assemble(cpu: dict[str, Any], cpuset: dict[str, Any], memory: dict[str, Any], pids: dict[str, int],
              blkio: dict[str, Any], hugetlb: dict[str, dict[str, int]]) -> dict[str, Any]:
    # Key order is Go's field order; intel_rdt and network_interfaces are never filled here
    # (no Intel RDT support, and the runtime creates no network interfaces).
    return {"cpu": cpu, "cpuset": cpuset, "memory": memory, "pids": pids, "blkio": blkio,
            "hugetlb": hugetlb, "intel_rdt": {}, "network_interfaces": None}


def collect(mode: str, paths: dict[str, str]) -> dict[str, Any]:
    """Stats for a manager's ``mode`` and ``paths`` (hybrid hosts read the v1 controllers)."""
    if mode == "v2":
        d = paths[UNIFIED]
        if not os.path.isdir(d):
            raise OCIError(f"cgroup {d} does not exist")
        return stats_v2(d)
    return stats_v1(paths)


# --- OOM counter -------------------------------------------------------------------------------
def oom_kills(mode: str, paths: dict[str, str]) -> int | None:
    """Processes the memory controller's OOM killer has killed so far; None without the counter.

    v1: ``oom_kill`` in memory.oom_control (kernel 4.13+); v2: ``oom_kill`` in memory.events.
    """
    if mode == "v2":
        d, name = paths.get(UNIFIED), "memory.events"
    else:
        d, name = paths.get("memory"), "memory.oom_control"
    if d is None or not files.exists(d, name):
        return None
    return _keyed(d, name).get("oom_kill", 0)
