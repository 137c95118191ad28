"""cgroup v1 resource writers: one small function per controller, each writing into one dir.

Each ``apply_*`` takes the controller's cgroup directory and the matching ``linux.resources``
member as parsed JSON, validates it and writes control files through :mod:`files`.  Semantics
and write order follow runc's libcontainer/cgroups/fs/*.go; see Documentation/admin-guide/
cgroup-v1/*.rst in the kernel for the file formats.
"""

from __future__ import annotations

import errno

from ociruntime.cgroups import files
from ociruntime.cgroups.common import I64, as_dict, as_list, opt_bool, opt_int, opt_str
from ociruntime.errors import ConfigError

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

def _match(pattern: str, value: str) -> bool:
    import re

    return re.match(pattern, value) is not None


# Checked with `re`, imported where these rare resources are set (not on every create).
_PAGE_SIZE = r"^[1-9][0-9]*[KMGTP]B$"
_IFACE = r"^[^\s/:]{1,15}$"


def check_memory_usage(dirpath: str, limit: int | None, usage_file: str) -> None:
    """``checkBeforeUpdate``: refuse a limit at or below the current usage (runc CheckMemoryUsage)."""
    if limit is None or limit <= 0:
        return
    usage = files.read_int(dirpath, usage_file)
    if usage >= limit:
        raise ConfigError(f"linux.resources.memory.limit: rejecting memory limit {limit} below usage {usage}")


def memory_values(memory: dict[str, Any]) -> dict[str, Any]:
    """Validated memory members shared by v1 and v2 (limit/reservation/swap >= -1)."""
    w = "linux.resources.memory"
    return {
        "limit": opt_int(memory, "limit", w, lo=-1, hi=I64),
        "reservation": opt_int(memory, "reservation", w, lo=-1, hi=I64),
        "swap": opt_int(memory, "swap", w, lo=-1, hi=I64),
        "kernel": opt_int(memory, "kernel", w, lo=-1, hi=I64),
        "kernelTCP": opt_int(memory, "kernelTCP", w, lo=-1, hi=I64),
        "swappiness": opt_int(memory, "swappiness", w, lo=-1, hi=2**64 - 1),
        "disableOOMKiller": opt_bool(memory, "disableOOMKiller", w),
        "useHierarchy": opt_bool(memory, "useHierarchy", w),
        "checkBeforeUpdate": opt_bool(memory, "checkBeforeUpdate", w),
    }


def _memory_and_swap(dirpath: str, limit: int, swap: int) -> None:
    # memory.memsw.limit_in_bytes (memory+swap, which is what the spec's "swap" means on v1)
    # must stay >= memory.limit_in_bytes at every instant, so the order of the two writes
    # depends on whether the limits grow or shrink (runc fs/memory.go setMemoryAndSwap).
    if limit == -1 and swap == 0 and files.exists(dirpath, "memory.memsw.limit_in_bytes"):
        swap = -1
    if limit and swap:
        current = files.read_int(dirpath, "memory.limit_in_bytes")
        if swap == -1 or current < swap:
            files.write(dirpath, "memory.memsw.limit_in_bytes", str(swap))
            files.write(dirpath, "memory.limit_in_bytes", str(limit))
        else:
            files.write(dirpath, "memory.limit_in_bytes", str(limit))
            files.write(dirpath, "memory.memsw.limit_in_bytes", str(swap))
        return
    if limit:
        files.write(dirpath, "memory.limit_in_bytes", str(limit))
    if swap:
        files.write(dirpath, "memory.memsw.limit_in_bytes", str(swap))


def apply_memory(dirpath: str, memory: dict[str, Any]) -> None:
    """memory controller: limits, soft limit, swappiness, OOM killer, hierarchy.

    ``kernel`` and ``kernelTCP`` are accepted and not written: kernel memory limits are
    deprecated upstream (runc ignores them too, and 6.x kernels reject kmem writes).
    """
    v = memory_values(as_dict(memory, "linux.resources.memory"))
    if v["checkBeforeUpdate"]:
        check_memory_usage(dirpath, v["limit"], "memory.usage_in_bytes")
    _memory_and_swap(dirpath, v["limit"] or 0, v["swap"] or 0)
    if v["reservation"]:
        files.write(dirpath, "memory.soft_limit_in_bytes", str(v["reservation"]))
    swappiness = v["swappiness"]
    if swappiness is not None and swappiness != -1:
        if swappiness > 100:
            raise ConfigError(f"linux.resources.memory.swappiness: {swappiness} is out of range 0..100")
        files.write(dirpath, "memory.swappiness", str(swappiness))
    if v["disableOOMKiller"]:
        files.write(dirpath, "memory.oom_control", "1")
    if v["useHierarchy"] is not None:
        files.write(dirpath, "memory.use_hierarchy", "1" if v["useHierarchy"] else "0")


def cpu_values(cpu: dict[str, Any]) -> dict[str, Any]:
    """Validated cpu members shared by v1 and v2."""
    w = "linux.resources.cpu"
    return {
        "shares": opt_int(cpu, "shares", w, lo=0, hi=2**64 - 1),
        "quota": opt_int(cpu, "quota", w, lo=-1, hi=I64),
        "period": opt_int(cpu, "period", w, lo=0, hi=2**64 - 1),
        "burst": opt_int(cpu, "burst", w, lo=0, hi=2**64 - 1),
        "realtimeRuntime": opt_int(cpu, "realtimeRuntime", w, lo=-1, hi=I64),
        "realtimePeriod": opt_int(cpu, "realtimePeriod", w, lo=0, hi=2**64 - 1),
        "idle": opt_int(cpu, "idle", w, lo=0, hi=1),
        "cpus": opt_str(cpu, "cpus", w),
        "mems": opt_str(cpu, "mems", w),
    }


def apply_cpu(dirpath: str, cpu: dict[str, Any]) -> None:
    """cpu controller: shares, CFS quota/period/burst, RT runtime/period, idle.

    ``cpus``/``mems`` belong to the cpuset controller (:func:`apply_cpuset`).
    """
    v = cpu_values(as_dict(cpu, "linux.resources.cpu"))
    # Realtime first: a parent's rt_runtime must be set before children get any (runc setRtSched).
    _apply_realtime(dirpath, v["realtimePeriod"] or 0, v["realtimeRuntime"] or 0)
    if v["shares"]:
        files.write(dirpath, "cpu.shares", str(v["shares"]))
        got = files.read_int(dirpath, "cpu.shares")
        if got != v["shares"]:
            raise ConfigError(
                f"linux.resources.cpu.shares: {v['shares']} is outside the kernel's range ({got})"
            )
    quota, period = v["quota"] or 0, v["period"] or 0
    period_pending = False
    if period:
        # A smaller period can be refused (EINVAL) while the old quota/new period ratio exceeds
        # the parent's; runc then sets the quota first and retries the period.
        try:
            files.write(dirpath, "cpu.cfs_period_us", str(period))
        except ConfigError:
            if not quota:
                raise
            period_pending = True
    if v["burst"] is not None:
        files.write(dirpath, "cpu.cfs_burst_us", str(v["burst"]))
    if quota:
        files.write(dirpath, "cpu.cfs_quota_us", str(quota))
        if period_pending:
            files.write(dirpath, "cpu.cfs_period_us", str(period))
    if v["idle"] is not None:
        files.write(dirpath, "cpu.idle", str(v["idle"]))


def _apply_realtime(dirpath: str, period: int, runtime: int) -> None:
    """cpu.rt_period_us then cpu.rt_runtime_us, or the other way round when the kernel refuses
    the period first (runc fs/cpu.go SetRtSched).

    The kernel checks runtime/period against the parent's and the children's bandwidth on every
    write, so which order works depends on the values already in force: a shorter period than
    the current runtime is refused (EINVAL) until the runtime has shrunk.
    """
    period_pending = False
    if period:
        try:
            files.write(dirpath, "cpu.rt_period_us", str(period))
        except files.InvalidValue as e:
            if e.errno != errno.EINVAL or not runtime:
                raise
            period_pending = True
    if runtime:
        files.write(dirpath, "cpu.rt_runtime_us", str(runtime))
        if period_pending:
            files.write(dirpath, "cpu.rt_period_us", str(period))


def apply_cpuset(dirpath: str, cpu: dict[str, Any]) -> None:
    """cpuset controller: ``cpus`` → cpuset.cpus, ``mems`` → cpuset.mems (same syntax on v2)."""
    v = cpu_values(as_dict(cpu, "linux.resources.cpu"))
    if v["cpus"]:
        files.write(dirpath, "cpuset.cpus", v["cpus"])
    if v["mems"]:
        files.write(dirpath, "cpuset.mems", v["mems"])


def pids_value(pids: dict[str, Any]) -> str | None:
    """The pids.max value: a positive limit as is, 0 or -1 (and below) as "max"."""
    limit = opt_int(as_dict(pids, "linux.resources.pids"), "limit", "linux.resources.pids", hi=I64)
    if limit is None:
        return None
    return str(limit) if limit > 0 else "max"


def apply_pids(dirpath: str, pids: dict[str, Any]) -> None:
    """pids controller (same file on v1 and v2)."""
    value = pids_value(pids)
    if value is not None:
        files.write(dirpath, "pids.max", value)


def device_entries(block_io: dict[str, Any], key: str, value_key: str) -> list[tuple[int, int, int | None]]:
    """``(major, minor, value)`` triples of a blockIO device list."""
    out = []
    for i, d in enumerate(as_list(block_io.get(key), f"linux.resources.blockIO.{key}")):
        where = f"linux.resources.blockIO.{key}[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: must be an object")
        major = opt_int(d, "major", where, lo=0, hi=2**32 - 1)
        minor = opt_int(d, "minor", where, lo=0, hi=2**32 - 1)
        if major is None or minor is None:
            raise ConfigError(f"{where}: major and minor are required")
        out.append((major, minor, opt_int(d, value_key, where, lo=0, hi=2**64 - 1)))
    return out


THROTTLES = {
    "throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rbps"),
    "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "wbps"),
    "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "riops"),
    "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "wiops"),
}


def apply_blkio(dirpath: str, block_io: dict[str, Any]) -> None:
    """blkio controller: weights (CFQ files, or BFQ's when CFQ is gone) and throttles."""
    b = as_dict(block_io, "linux.resources.blockIO")
    w = "linux.resources.blockIO"
    # Kernels without CFQ (5.0+) only have the BFQ files, named blkio.bfq.* (runc fs/blkio.go).
    bfq = not files.exists(dirpath, "blkio.weight") and files.exists(dirpath, "blkio.bfq.weight")
    weight_file = "blkio.bfq.weight" if bfq else "blkio.weight"
    weight = opt_int(b, "weight", w, lo=0, hi=1000)
    if weight:
        files.write(dirpath, weight_file, str(weight))
    leaf = opt_int(b, "leafWeight", w, lo=0, hi=1000)
    if leaf:
        files.write(dirpath, "blkio.leaf_weight", str(leaf))
    for major, minor, value in device_entries(b, "weightDevice", "weight"):
        if value is not None:
            files.write(dirpath, weight_file + "_device", f"{major}:{minor} {value}")
    for major, minor, value in device_entries(b, "weightDevice", "leafWeight"):
        if value is not None:
            files.write(dirpath, "blkio.leaf_weight_device", f"{major}:{minor} {value}")
    for key, (fname, _) in THROTTLES.items():
        for major, minor, rate in device_entries(b, key, "rate"):
            files.write(dirpath, fname, f"{major}:{minor} {rate or 0}")


def hugepage_entries(limits: Any) -> list[tuple[str, int]]:
    """Validated ``(pageSize, limit)`` pairs; the page size becomes part of a file name."""
    out = []
    for i, d in enumerate(as_list(limits, "linux.resources.hugepageLimits")):
        where = f"linux.resources.hugepageLimits[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: must be an object")
        size = opt_str(d, "pageSize", where)
        if size is None or not _match(_PAGE_SIZE, size):
            raise ConfigError(f"{where}.pageSize: {size!r} is not a page size like 2MB or 1GB")
        limit = opt_int(d, "limit", where, lo=0, hi=2**64 - 1)
        if limit is None:
            raise ConfigError(f"{where}.limit: is required")
        out.append((size, limit))
    return out


def apply_hugetlb(dirpath: str, limits: Any) -> None:
    """hugetlb controller: hugetlb.<size>.limit_in_bytes, plus the reservation limit if present."""
    for size, limit in hugepage_entries(limits):
        files.write(dirpath, f"hugetlb.{size}.limit_in_bytes", str(limit))
        # Since 5.7 reservations are accounted separately; runc keeps both limits equal.
        if files.exists(dirpath, f"hugetlb.{size}.rsvd.limit_in_bytes"):
            files.write(dirpath, f"hugetlb.{size}.rsvd.limit_in_bytes", str(limit))


def apply_net_cls(dirpath: str, network: dict[str, Any]) -> None:
    """net_cls controller: ``classID`` → net_cls.classid."""
    classid = opt_int(
        as_dict(network, "linux.resources.network"), "classID", "linux.resources.network", lo=0, hi=2**32 - 1
    )
    if classid is not None:
        files.write(dirpath, "net_cls.classid", str(classid))


def priority_entries(network: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for i, d in enumerate(as_list(network.get("priorities"), "linux.resources.network.priorities")):
        where = f"linux.resources.network.priorities[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: must be an object")
        name = opt_str(d, "name", where)
        if name is None or not _match(_IFACE, name):
            raise ConfigError(f"{where}.name: {name!r} is not an interface name")
        prio = opt_int(d, "priority", where, lo=0, hi=2**32 - 1)
        if prio is None:
            raise ConfigError(f"{where}.priority: is required")
        out.append((name, prio))
    return out


def apply_net_prio(dirpath: str, network: dict[str, Any]) -> None:
    """net_prio controller: each priority as "ifname prio" to net_prio.ifpriomap."""
    for name, prio in priority_entries(as_dict(network, "linux.resources.network")):
        files.write(dirpath, "net_prio.ifpriomap", f"{name} {prio}")


def rdma_lines(rdma: Any) -> list[str]:
    """rdma.max lines "<device> hca_handle=N hca_object=M" (same syntax on v1 and v2)."""
    lines = []
    for dev, lim in as_dict(rdma, "linux.resources.rdma").items():
        where = f"linux.resources.rdma.{dev}"
        if not dev or any(c.isspace() for c in dev) or "/" in dev:
            raise ConfigError(f"{where}: {dev!r} is not an rdma device name")
        lim = as_dict(lim, where)
        line = dev
        handles = opt_int(lim, "hcaHandles", where, lo=0, hi=2**32 - 1)
        objects = opt_int(lim, "hcaObjects", where, lo=0, hi=2**32 - 1)
        if handles is not None:
            line += f" hca_handle={handles}"
        if objects is not None:
            line += f" hca_object={objects}"
        if line != dev:
            lines.append(line)
    return lines


def apply_rdma(dirpath: str, rdma: Any) -> None:
    for line in rdma_lines(rdma):
        files.write(dirpath, "rdma.max", line)


def copy_cpuset_from_parent(dirpath: str, parent: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpus/mems, and joining it fails with ENOSPC:
    inherit the parent's (runc fs/cpuset.go cpusetCopyIfNeeded)."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if files.read(dirpath, name).strip() == "":
            files.write(dirpath, name, files.read(parent, name).strip())
