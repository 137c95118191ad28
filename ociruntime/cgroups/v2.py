"""cgroup v2 resource writers, converting the spec's v1-shaped values like runc does.

Each ``apply_*`` takes the container's unified cgroup directory.  Conversions (runc
libcontainer/cgroups/utils.go and fs2/*.go; Documentation/admin-guide/cgroup-v2.rst):
- cpu.shares [2, 262144] → cpu.weight [1, 10000]: ``1 + ((shares - 2) * 9999) // 262142``.
- quota/period → cpu.max "QUOTA PERIOD", quota -1 meaning "max", a period alone keeping the
  current quota; burst → cpu.max.burst.
- memory.swap is memory+swap on v1; v2's memory.swap.max is swap alone: ``swap - limit``
  (-1 stays "max"; memory -1 with swap unset means both unlimited).
- memory.limit → memory.max, reservation → memory.low, with -1 → "max".
- blkio weight [10, 1000] → io.weight [1, 10000]: ``1 + ((weight - 10) * 9999) // 990``, unless
  io.bfq.weight exists, which takes the v1 value unchanged.
- blkio throttles → io.max "MAJ:MIN rbps=N" (wbps, riops, wiops).
- hugetlb.<size>.limit_in_bytes → hugetlb.<size>.max; rdma.max keeps its syntax.
There is no v2 equivalent for swappiness, the OOM-killer switch, useHierarchy=false, realtime
CPU, blkio leaf weights and net_cls/net_prio: asking for one is a ConfigError.
"""

from __future__ import annotations

from ociruntime.cgroups import files, v1
from ociruntime.cgroups.common import as_dict, opt_int
from ociruntime.errors import ConfigError

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_UNIFIED_KEY = r"^[a-z_][a-z0-9_]*\.[A-Za-z0-9_.]+$"


def _re_match(pattern: str, value: str) -> bool:
    import re  # only for `unified` keys: not on every create

    return re.match(pattern, value) is not None


def unsupported(what: str) -> ConfigError:
    return ConfigError(f"linux.resources.{what}: not supported on this cgroup layout")


def no_unified() -> ConfigError:
    """runc's ErrV1NoUnified: a non-empty ``unified`` map anywhere but on pure cgroup v2 (runc's
    IsCgroup2UnifiedMode), hybrid included, whose unified hierarchy has no controllers."""
    return ConfigError("invalid configuration: cannot use unified on cgroup v1")


def shares_to_weight(shares: int) -> int:
    """cpu.shares → cpu.weight (runc ConvertCPUSharesToCgroupV2Value); 0 means unset."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight → io.weight (runc ConvertBlkIOToIOWeightValue); 0 means unset."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int, limit: int) -> int:
    """The spec's memory+swap value → memory.swap.max (runc ConvertMemorySwapToCgroupV2Value).

    Returns -1 for "max" and 0 for "leave alone".
    """
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise ConfigError("linux.resources.memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise ConfigError(f"linux.resources.memory.swap: {swap} must be >= memory.limit {limit}")
    return swap - limit


def _num(value: int) -> str:
    return "max" if value == -1 else str(value)


def apply_memory(dirpath: str, memory: dict[str, Any]) -> None:
    """memory.max, memory.swap.max, memory.low."""
    v = v1.memory_values(as_dict(memory, "linux.resources.memory"))
    if v["swappiness"] not in (None, -1):
        raise unsupported("memory.swappiness")
    if v["disableOOMKiller"]:
        raise unsupported("memory.disableOOMKiller")
    if v["useHierarchy"] is False:
        raise unsupported("memory.useHierarchy=false (cgroup v2 is always hierarchical)")
    limit, swap = v["limit"] or 0, v["swap"] or 0
    if v["checkBeforeUpdate"]:
        v1.check_memory_usage(dirpath, limit, "memory.current")
    swap_v2 = swap_to_v2(swap, limit)
    # swap == limit asks for no swap at all: write 0, which "leave alone" would otherwise skip.
    if swap_v2 != 0 or swap > 0:
        files.write(dirpath, "memory.swap.max", _num(swap_v2))
    if limit:
        files.write(dirpath, "memory.max", _num(limit))
    if v["reservation"]:
        files.write(dirpath, "memory.low", _num(v["reservation"]))


def apply_cpu(dirpath: str, cpu: dict[str, Any]) -> None:
    """cpu.weight, cpu.max, cpu.max.burst, cpu.idle; cpus/mems go to :func:`v1.apply_cpuset`."""
    v = v1.cpu_values(as_dict(cpu, "linux.resources.cpu"))
    if v["realtimeRuntime"] or v["realtimePeriod"]:
        raise unsupported("cpu.realtimeRuntime/realtimePeriod")
    if v["idle"] is not None:
        files.write(dirpath, "cpu.idle", str(v["idle"]))
    if v["shares"]:
        files.write(dirpath, "cpu.weight", str(shares_to_weight(v["shares"])))
    quota, period = v["quota"] or 0, v["period"] or 0
    if quota or period:
        files.write(dirpath, "cpu.max", _cpu_max(dirpath, quota, period))
    if v["burst"] is not None:
        files.write(dirpath, "cpu.max.burst", str(v["burst"]))


def _cpu_max(dirpath: str, quota: int, period: int) -> str:
    """The cpu.max line for a quota (0: not given, -1: no limit) and a period (0: not given).

    The kernel's parser (cpu_period_quota_parse) keeps the current period when the line has
    none, but always takes the quota from the line.  A period alone must keep the quota already
    in force (set by create or an earlier update), as it does on v1 where the two are separate
    files and in runc, whose update fills the missing one in from the container's config.
    """
    if quota > 0:
        value = str(quota)
    elif quota < 0:
        value = "max"
    elif files.exists(dirpath, "cpu.max"):
        value = files.read(dirpath, "cpu.max").split()[0]
    else:
        value = "max"
    return f"{value} {period}" if period else value


def apply_io(dirpath: str, block_io: dict[str, Any]) -> None:
    """io.bfq.weight or io.weight, per-device weights, io.max throttles."""
    b = as_dict(block_io, "linux.resources.blockIO")
    w = "linux.resources.blockIO"
    if opt_int(b, "leafWeight", w, lo=0, hi=1000):
        raise unsupported("blockIO.leafWeight")
    if any(lw is not None for _, _, lw in v1.device_entries(b, "weightDevice", "leafWeight")):
        raise unsupported("blockIO.weightDevice[].leafWeight")
    bfq = files.exists(dirpath, "io.bfq.weight")
    weight = opt_int(b, "weight", w, lo=0, hi=1000)
    if weight:
        if bfq:
            files.write(dirpath, "io.bfq.weight", str(weight))
        else:
            files.write(dirpath, "io.weight", str(blkio_weight_to_io_weight(weight)))
    for major, minor, dev_weight in v1.device_entries(b, "weightDevice", "weight"):
        if dev_weight is None:
            continue
        if bfq:
            files.write(dirpath, "io.bfq.weight", f"{major}:{minor} {dev_weight}")
        else:
            files.write(dirpath, "io.weight", f"{major}:{minor} {blkio_weight_to_io_weight(dev_weight)}")
    for key, (_, name) in v1.THROTTLES.items():
        for major, minor, rate in v1.device_entries(b, key, "rate"):
            files.write(dirpath, "io.max", f"{major}:{minor} {name}={rate or 0}")


def apply_hugetlb(dirpath: str, limits: Any) -> None:
    """hugetlb.<size>.max (and .rsvd.max when the kernel has it)."""
    for size, limit in v1.hugepage_entries(limits):
        files.write(dirpath, f"hugetlb.{size}.max", str(limit))
        if files.exists(dirpath, f"hugetlb.{size}.rsvd.max"):
            files.write(dirpath, f"hugetlb.{size}.rsvd.max", str(limit))


def apply_unified(dirpath: str, unified: Any) -> None:
    """Raw ``file: value`` pairs; keys are plain "controller.file" names, never paths."""
    for key, value in as_dict(unified, "linux.resources.unified").items():
        if "/" in key or ".." in key or not _re_match(_UNIFIED_KEY, key):
            raise ConfigError(f'linux.resources.unified: "{key}" is not a cgroup file name')
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f'linux.resources.unified."{key}": value must be a string')
        files.write(dirpath, key, value)
