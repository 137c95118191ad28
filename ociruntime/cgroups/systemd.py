"""The systemd cgroup driver (``--systemd-cgroup``): the container's cgroup is a transient scope.

What runc does, and so what engines expect (podman ``--cgroup-manager systemd``, containerd
``SystemdCgroup = true``, kubelet's systemd driver):

* ``linux.cgroupsPath`` is ``slice:prefix:name`` (empty: ``system.slice``, ``runc``, the
  container id); the unit is ``prefix-name.scope`` in ``slice``, whose cgroup path is the
  slice expanded (``a-b.slice`` -> ``/a.slice/a-b.slice``) plus the unit name, the same in every
  hierarchy.  A slice that does not exist yet is made by systemd when the scope names it.
* The scope is started over D-Bus (``StartTransientUnit``) with the init's pid in ``PIDs``,
  ``Delegate=yes`` (the cgroup below is ours to manage), ``DefaultDependencies=no``, and the
  accounting switches; systemd moves the pid into the new cgroup.  On v1 and hybrid hosts the
  runtime then makes the scope's directory in every other v1 hierarchy and moves the pid there
  itself, as runc's legacy manager does.
* Resources are given to systemd as unit properties where it has one (memory, CPU weight and
  quota, cpuset, tasks, IO weight, the device policy), so that systemd re-applying a unit later
  (daemon-reload) does not undo them, and written to the cgroup files as with cgroupfs for the
  rest (everything is written, so the files hold exactly what the config asks).
* ``delete`` stops the unit (``StopUnit``) and then removes what is left in the hierarchies
  systemd does not manage.

Rootless (``--systemd-cgroup`` with rootless cgroups: an unprivileged caller, or uid 0 in a user
namespace such as rootless podman's) the scope is the *user's* manager's (``systemd --user``, found
over the session bus or its private socket, cgroups/dbus.py), as runc's ``systemd/user.go``:

* only on pure cgroup v2 (only there can systemd delegate a subtree to a user); elsewhere it is
  refused with runc's message;
* the default slice is ``user.slice``, and every slice is relative to the user manager's own
  cgroup (its ``ControlGroup``, ``/user.slice/user-UID.slice/user@UID.service``): the
  container's cgroup is below it, delegated to the user, so its files are written as with root;
* no device properties: a user manager cannot attach a device program (nor can we: the rules
  are tried and their failure ignored, as for every rootless container).

Everything else (pids, freeze, stats, the files) is the cgroupfs manager's, on these paths.
"""

from __future__ import annotations

import os

from ociruntime.cgroups.base import UNIFIED
from ociruntime.cgroups.manager import FsManager
from ociruntime.errors import ConfigError, OCIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ociruntime.cgroups.dbus import Connection
    from ociruntime.cgroups.layout import Layout

DRIVER = "systemd"
DEFAULT_SLICE = "system.slice"
DEFAULT_USER_SLICE = "user.slice"
DEFAULT_PREFIX = "runc"
U64_MAX = 2**64 - 1  # systemd's "infinity" for limits and USEC_INFINITY for CPU quota
DEFAULT_PERIOD = 100_000
# Characters systemd accepts in a unit name (unit_name_is_valid, before the suffix).
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@")


def systemd_running() -> bool:
    """sd_booted(3): systemd is PID 1 when /run/systemd/system is a directory."""
    return os.path.isdir("/run/systemd/system") and not os.path.islink("/run/systemd/system")


def expand_slice(slice_name: str) -> str:
    """``a-b-c.slice`` -> ``/a.slice/a-b.slice/a-b-c.slice``; ``-.slice`` is the root ("/")."""
    bad = ConfigError(f'invalid systemd slice name "{slice_name}"')
    if not slice_name.endswith(".slice") or len(slice_name) <= len(".slice") or "/" in slice_name:
        raise bad
    stem = slice_name[: -len(".slice")]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise bad
        path += "/" + prefix + part + ".slice"
        prefix += part + "-"
    return path


def parse_cgroups_path(cgroups_path: str | None, container_id: str, user: bool = False) -> tuple[str, str]:
    """``slice:prefix:name`` (runc's form) -> (slice, unit name); an empty slice is
    ``system.slice``, or ``user.slice`` in the user's manager (``user``)."""
    default_slice = DEFAULT_USER_SLICE if user else DEFAULT_SLICE
    if not cgroups_path:
        slice_name, prefix, name = default_slice, DEFAULT_PREFIX, container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise ConfigError('expected cgroupsPath to be of format "slice:prefix:name" for systemd '
                              f'cgroups, got "{cgroups_path}" instead')
        slice_name, prefix, name = parts
        slice_name = slice_name or default_slice
    if name.endswith(".slice"):
        raise ConfigError(f'linux.cgroupsPath "{cgroups_path}": a container needs a scope, not a slice')
    unit = f"{prefix}-{name}.scope"
    if not name or not set(unit) <= _UNIT_CHARS or len(unit) > 255:
        raise ConfigError(f'linux.cgroupsPath "{cgroups_path or ""}": "{unit}" is not a valid '
                          "systemd unit name")
    expand_slice(slice_name)  # validates
    return slice_name, unit


# ---- resources as unit properties ------------------------------------------------------------

def cpu_quota_props(quota: int, period: int) -> tuple[list[tuple[str, tuple[str, Any]]], int]:
    """CPUQuotaPerSecUSec (+ CPUQuotaPeriodUSec) and the quota to write to the cgroup files.

    systemd keeps the quota as a percentage of a CPU with 10 ms steps: a finer quota is rounded
    up, and the files get the rounded value too so that both agree (runc's addCPUQuota)."""
    props: list[tuple[str, tuple[str, Any]]] = []
    if period:
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        per_sec = U64_MAX
        if quota > 0:
            p = period or DEFAULT_PERIOD
            per_sec = quota * 1_000_000 // p
            if per_sec % 10_000:
                per_sec = (per_sec // 10_000 + 1) * 10_000
                quota = per_sec * p // 1_000_000
        props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))
    return props, quota


def cpuset_bits(spec: str, where: str) -> bytes:
    """"0-2,7" -> the little-endian bitmask systemd's AllowedCPUs/AllowedMemoryNodes take."""
    mask = 0
    for part in spec.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f'{where}: "{spec}" is not a cpu/node list') from None
        if a < 0 or b < a or b > 65535:
            raise ConfigError(f'{where}: "{spec}" is not a cpu/node list')
        for i in range(a, b + 1):
            mask |= 1 << i
    return mask.to_bytes((mask.bit_length() + 7) // 8 or 1, "little") if mask else b""


def device_props(devices: Any) -> list[tuple[str, tuple[str, Any]]]:
    """DevicePolicy/DeviceAllow for the device rules (runc's devices/systemd.go).

    systemd knows allow lists only: a list that ends up allowing everything is ``auto`` with no
    entries; any other becomes ``strict`` with the allowed devices.  Deny rules other than a
    leading deny-all cannot be expressed and are left to the cgroup files (our own device
    filter, which is written in any case and is what enforces the policy)."""
    from ociruntime.cgroups import devices as dev

    rules = [*dev.parse_rules(devices), *dev.DEFAULT_RULES]
    if dev.allows_everything(rules):
        return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
    allowed: list[tuple[str, str]] = []
    for r in rules:
        if not r.allow or r.type == "a":
            continue
        group = "block-" if r.type == "b" else "char-"
        if r.major is None:
            if r.minor is not None:
                continue  # "*:n" has no systemd form
            path = group + "*"
        elif r.minor is None:
            path = f"{group}{r.major}"
        else:
            path = f"/dev/{'block' if r.type == 'b' else 'char'}/{r.major}:{r.minor}"
        allowed.append((path, r.access))
    return [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", allowed))]


def resource_props(resources: dict[str, Any], mode: str, *, skip_devices: bool = False
                   ) -> tuple[list[tuple[str, tuple[str, Any]]], dict[str, Any]]:
    """Unit properties for ``linux.resources`` on ``mode``, and the resources to write to the
    cgroup files (the CPU quota rounded as systemd keeps it)."""
    from ociruntime.cgroups import v1, v2
    from ociruntime.cgroups.common import as_dict

    props: list[tuple[str, tuple[str, Any]]] = []
    files_res = dict(resources)
    if not skip_devices:
        props += device_props(resources.get("devices"))
    memory = v1.memory_values(as_dict(resources.get("memory"), "linux.resources.memory"))
    limit = memory["limit"] or 0
    if limit:
        props.append(("MemoryMax" if mode == "v2" else "MemoryLimit", ("t", U64_MAX if limit < 0 else limit)))
    if mode == "v2":
        if memory["reservation"]:
            props.append(("MemoryLow", ("t", max(memory["reservation"], 0))))
        swap = v2.swap_to_v2(memory["swap"] or 0, limit)
        if swap:
            props.append(("MemorySwapMax", ("t", U64_MAX if swap < 0 else swap)))
    cpu_raw = as_dict(resources.get("cpu"), "linux.resources.cpu")
    cpu = v1.cpu_values(cpu_raw)
    if cpu["shares"]:
        if mode == "v2":
            props.append(("CPUWeight", ("t", v2.shares_to_weight(cpu["shares"]))))
        else:
            props.append(("CPUShares", ("t", cpu["shares"])))
    quota_props, quota = cpu_quota_props(cpu["quota"] or 0, cpu["period"] or 0)
    props += quota_props
    if cpu["quota"] and quota != cpu["quota"]:
        files_res["cpu"] = {**cpu_raw, "quota": quota}
    for key, prop in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
        if cpu[key]:
            props.append((prop, ("ay", cpuset_bits(cpu[key], f"linux.resources.cpu.{key}"))))
    pids = as_dict(resources.get("pids"), "linux.resources.pids")
    if pids.get("limit") is not None:
        limit = pids["limit"]
        # systemd refuses TasksMax=0: 1 is as close as it goes (runc does the same).
        props.append(("TasksMax", ("t", U64_MAX if limit < 0 else max(limit, 1))))
    weight = as_dict(resources.get("blockIO"), "linux.resources.blockIO").get("weight")
    if isinstance(weight, int) and weight:
        if mode == "v2":
            props.append(("IOWeight", ("t", v2.blkio_weight_to_io_weight(weight))))
        else:
            props.append(("BlockIOWeight", ("t", weight)))
    return props, files_res


# ---- the manager -----------------------------------------------------------------------------

class SystemdManager(FsManager):
    """A transient scope; ``unit`` and ``slice`` name it, ``paths`` are its directories."""

    def __init__(self, mode: str, paths: dict[str, str], mounts: dict[str, str], unit: str,
                 slice_name: str, created: list[str] | None = None, started: bool = False,
                 user_bus: tuple[str, bool] | None = None) -> None:
        super().__init__(mode, paths, mounts, created)
        self.unit = unit
        self.slice = slice_name
        # The user's manager (rootless): the socket create reached it on, and whether it is a
        # bus; later commands try their own environment's first (runc's rule), then this one.
        self.user_bus = user_bus
        # Whether this container's start job succeeded: only then is the unit ours to stop.  A
        # unit of the same name that refused us belongs to someone else; a scope we started but
        # never recorded (a create killed midway) is removed by systemd once its processes die.
        self.started = started

    @property
    def user(self) -> bool:
        return self.user_bus is not None

    def to_state(self) -> dict[str, Any]:
        out = {**super().to_state(), "driver": DRIVER, "unit": self.unit, "slice": self.slice,
               "started": self.started}
        if self.user_bus is not None:
            out["userBus"] = list(self.user_bus)
        return out

    def _connect(self) -> Connection:
        from ociruntime.cgroups.dbus import Connection

        if self.user_bus is not None:
            return Connection.open_user(extra=[self.user_bus])
        return Connection.open()

    def _systemd_dirs(self) -> set[str]:
        """The scope's directories systemd makes and removes itself."""
        return {d for name, d in self.paths.items() if name in (UNIFIED, "name=systemd")}

    def create(self) -> None:
        # Nothing yet: a scope cannot exist without a process; join() starts it with the pid.
        return None

    def to_intent(self) -> dict[str, Any]:
        return {**self.to_state(), "created": [], "started": False}

    def join(self, pid: int) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise OCIError(f"join cgroup: invalid pid {pid!r}")
        props: list[tuple[str, tuple[str, Any]]] = [
            ("Description", ("s", f"ociruntime container {self.unit}")),
            ("Slice", ("s", self.slice)),
            ("Delegate", ("b", True)),
            ("PIDs", ("au", [pid])),
            ("DefaultDependencies", ("b", False)),
            ("MemoryAccounting", ("b", True)),
            ("CPUAccounting", ("b", True)),
            ("IOAccounting" if self.mode == "v2" else "BlockIOAccounting", ("b", True)),
            ("TasksAccounting", ("b", True)),
        ]
        with self._connect() as conn:
            self._start(conn, props)
        # v1 hierarchies systemd does not put the scope in (cpuset, freezer, net_cls, ...): made
        # and joined here, as runc's legacy manager does; mkdir of an existing one is a no-op.
        for name, d in sorted(self.paths.items()):
            if d in self._systemd_dirs():
                continue
            self._mkdir_all(self.mounts[name], d)
            if name == "cpuset":
                self._cpuset_copy_down(self.mounts[name], d)
        from ociruntime.cgroups import files

        for d in self._dirs():
            if d not in self._systemd_dirs():
                files.write(d, "cgroup.procs", str(pid))

    def _start(self, conn: Connection, props: list) -> None:
        from ociruntime.cgroups.dbus import DBusError

        conn.subscribe()
        try:
            (job,) = conn.call("StartTransientUnit", "ssa(sv)a(sa(sv))", (self.unit, "replace", props, []))
        except DBusError as exc:
            if not exc.name.endswith(".UnitExists"):
                raise OCIError(f"systemd: start {self.unit}: {exc}") from None
            # A failed unit of the same name left behind: reset it and try once more (runc).
            self._reset_failed(conn)
            try:
                (job,) = conn.call("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                   (self.unit, "replace", props, []))
            except DBusError as exc2:
                raise OCIError(f"systemd: start {self.unit}: {exc2}") from None
        result = conn.wait_job(job)
        if result != "done":
            self._reset_failed(conn)
            raise OCIError(f"systemd: start {self.unit}: job {result}")
        self.started = True

    def _reset_failed(self, conn: Connection) -> None:
        from ociruntime.cgroups.dbus import DBusError

        try:
            conn.call("ResetFailedUnit", "s", (self.unit,))
        except DBusError:
            pass

    def pids(self) -> list[int]:
        # Before our start job succeeded, whatever the scope's paths hold (a unit of the same
        # name) is not the container's: create's cleanup must not kill it.
        return super().pids() if self.started else []

    def set_resources(self, resources: dict[str, Any], *, skip_devices: bool = False) -> None:
        from ociruntime.cgroups.common import as_dict

        r = as_dict(resources, "linux.resources")
        # A user manager cannot attach a device program: no device properties there.
        props, files_res = resource_props(r, self.mode, skip_devices=skip_devices or self.user)
        if props:
            from ociruntime.cgroups.dbus import DBusError

            with self._connect() as conn:
                try:
                    conn.call("SetUnitProperties", "sba(sv)", (self.unit, True, props))
                except DBusError as exc:
                    raise OCIError(f"systemd: set properties of {self.unit}: {exc}") from None
        super().set_resources(files_res, skip_devices=skip_devices)

    def destroy(self) -> None:
        from ociruntime.cgroups.dbus import DBusError

        if not self.started:
            # The unit, if any, is not ours: remove only the directories this manager made.
            for d in sorted(self.created, key=lambda p: p.count("/"), reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    continue
            return
        try:
            with self._connect() as conn:
                conn.subscribe()
                try:
                    (job,) = conn.call("StopUnit", "ss", (self.unit, "replace"))
                except DBusError as exc:
                    if not exc.name.endswith(".NoSuchUnit"):
                        raise OCIError(f"systemd: stop {self.unit}: {exc}") from None
                else:
                    conn.wait_job(job)
                self._reset_failed(conn)
        except OCIError:
            if self.exists():
                raise
        # What systemd does not manage (the other v1 hierarchies) is ours to remove.
        super().destroy()


def new_systemd_manager(cgroups_path: str | None, container_id: str, layout: Layout,
                        user: bool = False) -> SystemdManager:
    """The manager for a container under the systemd driver (``layout``: the host's mounts);
    ``user``: in the caller's own manager (rootless), which is asked for its cgroup now."""
    if not systemd_running():
        raise OCIError("systemd not running on this host, cannot use systemd as cgroup manager")
    slice_name, unit = parse_cgroups_path(cgroups_path, container_id, user)
    inner = expand_slice(slice_name).rstrip("/") + "/" + unit
    user_bus = None
    if user:
        if layout.mode != "v2":
            # runc's refusal (systemd/v1.go): systemd delegates to users on cgroup v2 only.
            raise OCIError("cannot use rootless systemd cgroups manager on cgroup v1")
        manager_cgroup, user_bus = user_manager_cgroup()
        inner = manager_cgroup.rstrip("/") + inner
    mounts = {name: m.mountpoint for name, m in layout.v1.items()}
    if layout.unified is not None:
        mounts[UNIFIED] = layout.unified.mountpoint
    paths = {name: os.path.join(mp, inner.lstrip("/")) for name, mp in mounts.items()}
    return SystemdManager(layout.mode, paths, mounts, unit, slice_name, user_bus=user_bus)


def user_manager_cgroup() -> tuple[str, tuple[str, bool]]:
    """The user manager's own cgroup (``/user.slice/user-UID.slice/user@UID.service``) and the
    socket it answered on."""
    from ociruntime.cgroups.dbus import Connection, DBusError

    with Connection.open_user() as conn:
        try:
            cgroup = conn.manager_property("ControlGroup")
        except DBusError as exc:
            raise OCIError(f"systemd (user): get ControlGroup: {exc}") from None
        if not isinstance(cgroup, str) or not cgroup.startswith("/") or ".." in cgroup.split("/"):
            raise OCIError(f"systemd (user): unusable ControlGroup {cgroup!r}")
        return cgroup, (conn.path, conn.bus)


def from_state(d: dict[str, Any]) -> SystemdManager:
    """Rebuild from :meth:`SystemdManager.to_state` output."""
    from ociruntime.cgroups.manager import from_state as fs_from_state

    unit, slice_name, started = d.get("unit"), d.get("slice"), d.get("started")
    if not isinstance(unit, str) or not isinstance(slice_name, str) or not isinstance(started, bool):
        raise OCIError("cgroup state: malformed")
    bus = d.get("userBus")
    user_bus = None
    if bus is not None:
        if not (isinstance(bus, list) and len(bus) == 2 and isinstance(bus[0], str)
                and isinstance(bus[1], bool)):
            raise OCIError("cgroup state: malformed")
        user_bus = (bus[0], bus[1])
    fs = fs_from_state({k: v for k, v in d.items() if k not in ("unit", "slice", "started", "userBus")}
                       | {"driver": "cgroupfs"})
    return SystemdManager(fs.mode, fs.paths, fs.mounts, unit, slice_name, fs.created, started, user_bus)
