"""``update``: change a live container's cgroup limits (runc's ``update`` command).

The new values come either as a ``linux.resources`` JSON document (``--resources FILE``, ``-``
for stdin: containerd pipes it, podman writes a file) or from runc's per-field flags.  Every
value is validated before the first control file is written, so a bad one changes nothing.

runc keeps the container's current resources and merges each update into them; this runtime
keeps what the updates asked for in ``<state dir>/resources.json`` (create does not write it:
absent means no update yet).  A section the update touches is applied whole, as merged with the
earlier updates, so values the kernel needs together reach the writers together: a new CFS
period keeps the quota set before (runc's "leave the unset parameter at the old value"), a new
swap limit comes with the memory limit it is relative to.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any

from ociruntime import jsonio
from ociruntime.cgroups.common import I64, as_dict, as_list, opt_int
from ociruntime.errors import ConfigError, OCIError, StateError, UsageError
from ociruntime.lifecycle.context import Context
from ociruntime.state.store import ContainerDir, Store

if TYPE_CHECKING:
    from ociruntime.cgroups.base import Manager

RESOURCES_FILE = "resources.json"

# flag -> (resources section, member, kind).  Kinds: "uint"/"int" as Go's strconv parses them,
# "mem" in docker's RAMInBytes units (or -1), "str" taken as is.
FLAG_FIELDS: dict[str, tuple[str, str, str]] = {
    "blkio-weight": ("blockIO", "weight", "uint"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-burst": ("cpu", "burst", "uint"),
    "cpu-share": ("cpu", "shares", "uint"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "memory": ("memory", "limit", "mem"),
    "memory-reservation": ("memory", "reservation", "mem"),
    "memory-swap": ("memory", "swap", "mem"),
    "pids-limit": ("pids", "limit", "int"),
}
# In runc a zero (or empty) flag value means "leave unchanged"; only a burst of 0 is a value
# (it turns bursting off).
_ZERO_IS_A_VALUE = frozenset({"cpu-burst"})
RDT_FLAGS = ("l3-cache-schema", "mem-bw-schema")

_UINT = re.compile(r"^[0-9]+$")
_INT = re.compile(r"^[+-]?[0-9]+$")
# docker/go-units sizeRegex: a decimal number, an optional space, an optional binary unit
# prefix, an optional "i" and an optional "b", case-insensitive.
_RAM = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# The same names the v2 writer accepts: "controller.file", never a path.
_UNIFIED_KEY = re.compile(r"^[a-z_][a-z0-9_]*\.[A-Za-z0-9_.]+$")
_SECTIONS = frozenset(
    {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified"}
)


# --- parsing ------------------------------------------------------------------------------------
def parse_ram(text: str) -> int:
    """docker's ``RAMInBytes``: ``64m``, ``1G``, ``512KiB``, ``100`` (bytes); ``-1`` is unlimited."""
    if text == "-1":
        return -1
    m = _RAM.match(text)
    if m is None:
        raise ValueError(f"invalid size: '{text}'")
    number, unit = m.group(1), (m.group(2) or "").lower()
    if "." in number:
        value = int(float(number) * _RAM_UNITS[unit])
    else:
        value = int(number) * _RAM_UNITS[unit]
    if value > I64:
        raise ValueError(f"size out of range: '{text}'")
    return value


def _flag_value(flag: str, kind: str, text: str) -> int | str:
    if kind == "str":
        return text
    try:
        if kind == "mem":
            return parse_ram(text)
        pattern = _UINT if kind == "uint" else _INT
        if not pattern.match(text):
            raise ValueError(f'parsing "{text}": invalid syntax')
        value = int(text, 10)
        if (kind == "uint" and value > 2**64 - 1) or (kind == "int" and not -(2**63) <= value <= I64):
            raise ValueError(f'parsing "{text}": value out of range')
        return value
    except ValueError as e:
        raise UsageError(f"invalid value for --{flag}: {e}") from None


def resources_from_flags(values: dict[str, str | None]) -> dict[str, Any]:
    """runc's per-field flags (name → text, None when not given) as a resources document."""
    for flag in RDT_FLAGS:
        if values.get(flag):
            raise OCIError(f"--{flag}: Intel RDT is not supported by this runtime")
    out: dict[str, Any] = {}
    for flag, (section, member, kind) in FLAG_FIELDS.items():
        text = values.get(flag)
        if text is None or text == "":
            continue
        value = _flag_value(flag, kind, text)
        if value == 0 and flag not in _ZERO_IS_A_VALUE:
            continue
        out.setdefault(section, {})[member] = value
    return out


def read_resources(path: str) -> dict[str, Any]:
    """The JSON document of ``--resources PATH`` (``-``: standard input); must be an object."""
    where = "standard input" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise OCIError(f"read resources from {where}: {os.strerror(e.errno or 0).lower()}") from None
    try:
        doc = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"resources from {where}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"resources from {where}: must be a JSON object")
    return doc


# --- merging ------------------------------------------------------------------------------------
def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: objects merge member by member, anything else replaces;
    JSON null means "not given" (as Go's decoder leaves a nil pointer)."""
    out = dict(base)
    for key, value in update.items():
        if value is None:
            continue
        old = out.get(key)
        out[key] = merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return out


def to_apply(merged: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The sections the update names, each whole from the merged resources."""
    return {k: merged[k] for k, v in update.items() if v is not None and k in merged}


def to_store(merged: dict[str, Any]) -> dict[str, Any]:
    """What to remember: the merge, without the one-shot ``checkBeforeUpdate`` switch."""
    memory = merged.get("memory")
    if isinstance(memory, dict) and "checkBeforeUpdate" in memory:
        memory = {k: v for k, v in memory.items() if k != "checkBeforeUpdate"}
        return {**merged, "memory": memory}
    return merged


# --- validation ---------------------------------------------------------------------------------
def validate(resources: dict[str, Any], mode: str) -> None:
    """Check every value the writers would check, before any of them writes (ConfigError)."""
    from ociruntime.cgroups import devices, v1, v2

    r = as_dict(resources, "linux.resources")
    unknown = sorted(set(r) - _SECTIONS)
    if unknown:
        raise ConfigError(f"linux.resources.{unknown[0]}: unknown resource")
    devices.parse_rules(r.get("devices"))
    memory = v1.memory_values(as_dict(r.get("memory"), "linux.resources.memory"))
    cpu = v1.cpu_values(as_dict(r.get("cpu"), "linux.resources.cpu"))
    v1.pids_value(r.get("pids"))
    _validate_block_io(as_dict(r.get("blockIO"), "linux.resources.blockIO"))
    v1.hugepage_entries(r.get("hugepageLimits"))
    network = as_dict(r.get("network"), "linux.resources.network")
    opt_int(network, "classID", "linux.resources.network", lo=0, hi=2**32 - 1)
    v1.priority_entries(network)
    v1.rdma_lines(r.get("rdma"))
    unified = as_dict(r.get("unified"), "linux.resources.unified")
    for key, value in unified.items():
        if "/" in key or ".." in key or not _UNIFIED_KEY.match(key):
            raise ConfigError(f'linux.resources.unified: "{key}" is not a cgroup file name')
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f'linux.resources.unified."{key}": value must be a string')
    if memory["swappiness"] is not None and memory["swappiness"] > 100:
        raise ConfigError(f"linux.resources.memory.swappiness: {memory['swappiness']} is out of range 0..100")
    if mode == "v2":
        _validate_v2(memory, cpu, network)
    elif unified:
        raise v2.no_unified()


def _validate_block_io(b: dict[str, Any]) -> None:
    from ociruntime.cgroups import v1

    w = "linux.resources.blockIO"
    opt_int(b, "weight", w, lo=0, hi=1000)
    opt_int(b, "leafWeight", w, lo=0, hi=1000)
    v1.device_entries(b, "weightDevice", "weight")
    v1.device_entries(b, "weightDevice", "leafWeight")
    for key in v1.THROTTLES:
        v1.device_entries(b, key, "rate")


def _validate_v2(memory: dict[str, Any], cpu: dict[str, Any], network: dict[str, Any]) -> None:
    """The refusals of the v2 writers (values with no v2 equivalent, swap below the limit)."""
    from ociruntime.cgroups import v2
    from ociruntime.cgroups.common import is_set

    if memory["swappiness"] not in (None, -1):
        raise v2.unsupported("memory.swappiness")
    if memory["disableOOMKiller"]:
        raise v2.unsupported("memory.disableOOMKiller")
    if memory["useHierarchy"] is False:
        raise v2.unsupported("memory.useHierarchy=false (cgroup v2 is always hierarchical)")
    v2.swap_to_v2(memory["swap"] or 0, memory["limit"] or 0)
    if cpu["realtimeRuntime"] or cpu["realtimePeriod"]:
        raise v2.unsupported("cpu.realtimeRuntime/realtimePeriod")
    if is_set(network):
        raise v2.unsupported("network")


def _warn_device_access(resources: dict[str, Any]) -> None:
    """Unknown device access letters are ignored (as runc does): say so, for this update's rules
    only (the merged ones include earlier updates', already warned about)."""
    from ociruntime.cgroups import devices
    from ociruntime.log import LOG

    devices.parse_rules(resources.get("devices"), LOG.warning)


# --- the state file -----------------------------------------------------------------------------
def load_resources(cdir: ContainerDir) -> dict[str, Any]:
    """The merged resources of earlier updates; {} when there were none."""
    data = cdir.read_file(RESOURCES_FILE)
    if data is None:
        return {}
    try:
        doc = jsonio.loads(data)
    except ValueError:
        raise OCIError(f"{os.path.join(cdir.path, RESOURCES_FILE)}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise OCIError(f"{os.path.join(cdir.path, RESOURCES_FILE)}: not a JSON object")
    return doc


def save_resources(cdir: ContainerDir, resources: dict[str, Any]) -> None:
    """Write ``resources.json`` atomically (temp file + rename, mode 0600), like state.json."""
    cdir.write_file(RESOURCES_FILE, jsonio.dumps(resources).encode())


# --- the command --------------------------------------------------------------------------------
def _manager(cgroup_state: dict[str, Any]) -> Manager:
    from ociruntime.cgroups import manager_from_state

    return manager_from_state(cgroup_state)


def update(ctx: Context, container_id: str, resources: dict[str, Any]) -> None:
    """Validate, apply and remember ``resources`` for a created, running or paused container."""
    as_dict(resources, "linux.resources")
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        if cdir.status(rec) == "stopped":
            raise StateError("container not running")
        if not rec.cgroup:
            raise StateError(f"container {container_id} has no cgroup to update")
        manager = _manager(rec.cgroup)
        merged = merge(load_resources(cdir), resources)
        apply = to_apply(merged, resources)
        _warn_device_access(resources)
        validate(merged, manager.mode)
        # The device rules stay as create set them unless this update brings its own: applying
        # devices rewrites the whole list (deny all, then the rules).
        has_devices = bool(as_list(resources.get("devices"), "linux.resources.devices"))
        manager.set_resources(apply, skip_devices=not has_devices)
        save_resources(cdir, to_store(merged))

