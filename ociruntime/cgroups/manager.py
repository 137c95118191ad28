"""The cgroupfs driver: one class for pure v1, pure v2 and hybrid layouts.

A hybrid host is handled as v1 (every resource goes to its v1 controller) plus membership in
the controller-less unified hierarchy, which is what runc's fs driver does; pure v2 writes
everything into the one unified directory.  Resources whose controller is absent raise a
ConfigError instead of being skipped.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from ociruntime.cgroups import files
from ociruntime.cgroups.base import UNIFIED, Manager
from ociruntime.cgroups.common import as_dict, is_set
from ociruntime.errors import ConfigError, OCIError

# Annotations only (postponed by `from __future__ import annotations`): `typing` and
# `collections.abc` cost ~4 ms to import on state/kill/delete, which rebuild a manager.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DRIVER = "cgroupfs"
RESOURCE_KEYS = frozenset(
    {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified"}
)
# Which hierarchy answers pids(): the unified one holds every process on v2 and hybrid hosts;
# on pure v1 any controller that is always mounted in practice will do.
_PIDS_PREFERENCE = (UNIFIED, "pids", "freezer", "devices", "memory", "cpu", "cpuacct", "name=systemd")
_RMDIR_ATTEMPTS = 60
_MKDIR_ATTEMPTS = 5
_FREEZE_ATTEMPTS = 1000


def _oserror(what: str, path: str, exc: OSError) -> OCIError:
    return OCIError(f"{what} {path}: {(exc.strerror or os.strerror(exc.errno or 0)).lower()}")


def _backoff(attempt: int) -> None:
    # Short first sleeps: rmdir races with exiting tasks and freezing takes microseconds in the
    # common case; the cap keeps the total bounded (about 3 s for rmdir).
    time.sleep(min(0.001 * (2**attempt), 0.05))


class FsManager(Manager):
    """cgroupfs manager; ``mounts`` maps hierarchy name → mount point, ``created`` the dirs it made."""

    def __init__(
        self, mode: str, paths: dict[str, str], mounts: dict[str, str], created: list[str] | None = None
    ) -> None:
        self.mode = mode
        self.paths = dict(paths)
        self.mounts = dict(mounts)
        self.created = list(created or [])

    # --- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "driver": DRIVER,
            "mode": self.mode,
            "paths": dict(self.paths),
            "mounts": dict(self.mounts),
            "created": list(self.created),
        }

    def to_intent(self) -> dict[str, Any]:
        missing = list(self.created)
        for d in self._dirs():
            for level in self._levels(self._mount_of(d), d):
                if level not in missing and not os.path.lexists(level):
                    missing.append(level)
        return {**self.to_state(), "created": missing}

    def _dirs(self) -> list[str]:
        """Distinct cgroup dirs (co-mounted controllers share one), v1 first, unified last."""
        seen: list[str] = []
        for _name, d in sorted(self.paths.items(), key=lambda kv: (kv[0] == UNIFIED, kv[0])):
            if d not in seen:
                seen.append(d)
        return seen

    def _mount_of(self, d: str) -> str:
        return next(self.mounts[n] for n, p in self.paths.items() if p == d)

    # --- create / join ---------------------------------------------------------------------
    def check_existing(self, warn: Callable[[str], None]) -> None:
        # runc's checks in its factory (libcontainer/factory_linux.go), made before anything is
        # created, so a refusal leaves the cgroup exactly as it was: it is not ours to remove.
        if self.exists():
            try:
                pids = self.pids()
            except OCIError:
                pids = []  # removed meanwhile by whoever owns it
            if pids:
                # runc 1.1's warning; sharing a cgroup with other processes still works.
                warn(f"container's cgroup is not empty: {len(pids)} process(es) found")
        if self._frozen_before_create():
            raise OCIError("container's cgroup unexpectedly frozen")

    def _frozen_before_create(self) -> bool:
        """Whether a task joining the cgroup now would be frozen: the cgroup, or (when it does not
        exist yet) the nearest existing ancestor it would inherit the freezer state from, is
        frozen; in the v1 freezer or, on hybrid and v2, the unified hierarchy's cgroup.freeze."""
        for name, control in (("freezer", "freezer.state"), (UNIFIED, "cgroup.events")):
            d = self.paths.get(name)
            if d is None:
                continue
            levels = [self.mounts[name], *self._levels(self.mounts[name], d)]
            existing = next((lv for lv in reversed(levels) if os.path.isdir(lv)), None)
            if existing is None or not files.exists(existing, control):
                continue  # a hierarchy root has no freezer files: it cannot be frozen
            text = files.read(existing, control)
            if name == "freezer" and text.strip() in ("FROZEN", "FREEZING"):
                return True
            if name == UNIFIED and "frozen 1" in text.splitlines():
                return True
        return False

    def create(self) -> None:
        for d in self._dirs():
            self._mkdir_all(self._mount_of(d), d)
        cpuset = self.paths.get("cpuset")
        if cpuset is not None and self.mode != "v2":
            self._cpuset_copy_down(self.mounts["cpuset"], cpuset)
        if self.mode == "v2" and UNIFIED in self.paths:
            self._enable_controllers(self.mounts[UNIFIED], self.paths[UNIFIED])

    def _levels(self, mountpoint: str, d: str) -> list[str]:
        rel = os.path.relpath(d, mountpoint)
        if rel.startswith("..") or rel == ".":
            raise OCIError(f"cgroup path {d} is not below its hierarchy {mountpoint}")
        out, cur = [], mountpoint
        for part in rel.split("/"):
            cur = os.path.join(cur, part)
            out.append(cur)
        return out

    def _mkdir_all(self, mountpoint: str, d: str) -> None:
        for attempt in range(_MKDIR_ATTEMPTS):
            try:
                self._mkdir_levels(mountpoint, d)
                return
            except FileNotFoundError:
                # A parent we found existing was removed before we made its child: the delete of
                # another container that had made it (a shared parent) saw it empty.  Again.
                if attempt == _MKDIR_ATTEMPTS - 1:
                    raise _oserror("mkdir", d, FileNotFoundError(errno.ENOENT, "")) from None

    def _mkdir_levels(self, mountpoint: str, d: str) -> None:
        for level in self._levels(mountpoint, d):
            try:
                os.mkdir(level, 0o755)
            except FileExistsError:
                # cgroupfs has no symlinks, but a fake or hostile tree might: never walk through one.
                try:
                    st = os.lstat(level)
                except FileNotFoundError:
                    raise  # removed right after our mkdir failed: the caller starts over
                if not stat.S_ISDIR(st.st_mode):
                    raise OCIError(f"mkdir {level}: exists and is not a directory") from None
                continue
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise _oserror("mkdir", level, exc) from None
            if level not in self.created:
                self.created.append(level)

    def _cpuset_copy_down(self, mountpoint: str, leaf: str) -> None:
        # Every level between the mount and the leaf needs non-empty cpus/mems before a task can
        # join below it; fill each empty one from its parent, top-down.
        from ociruntime.cgroups import v1

        parent = mountpoint
        for level in self._levels(mountpoint, leaf):
            if files.exists(level, "cpuset.cpus"):
                v1.copy_cpuset_from_parent(level, parent)
            parent = level

    def _enable_controllers(self, mountpoint: str, leaf: str) -> None:
        # A v2 controller's files appear in a cgroup only when its parent lists the controller in
        # cgroup.subtree_control, so enable what each ancestor has, from the root down (runc
        # fs2/create.go).  The leaf's own subtree_control is left alone: the container's tasks
        # live in it and the no-internal-process rule would then refuse them.
        for level in [mountpoint, *self._levels(mountpoint, leaf)[:-1]]:
            if not files.exists(level, "cgroup.controllers"):
                continue
            ctrls = files.read(level, "cgroup.controllers").split()
            if not ctrls:
                continue
            try:
                files.write(level, "cgroup.subtree_control", " ".join("+" + c for c in ctrls))
            except OCIError:
                # One controller can refuse (cpu with realtime tasks present); enable the rest.
                for c in ctrls:
                    try:
                        files.write(level, "cgroup.subtree_control", "+" + c)
                    except OCIError:
                        continue

    def join(self, pid: int) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise OCIError(f"join cgroup: invalid pid {pid!r}")
        for d in self._dirs():
            files.write(d, "cgroup.procs", str(pid))

    # --- resources -------------------------------------------------------------------------
    def _controller_dir(self, controller: str, what: str) -> str:
        if self.mode == "v2":
            return self.paths[UNIFIED]
        d = self.paths.get(controller)
        if d is None:
            raise ConfigError(
                f"linux.resources.{what}: not supported on this cgroup layout (no {controller} controller)"
            )
        return d

    def set_resources(self, resources: dict[str, Any], *, skip_devices: bool = False) -> None:
        # The controller writers are imported here, not at module top: state/kill/delete rebuild
        # this manager on every call and never write resources.
        from ociruntime.cgroups import v1, v2

        r = as_dict(resources, "linux.resources")
        unknown = sorted(set(r) - RESOURCE_KEYS)
        if unknown:
            raise ConfigError(f"linux.resources.{unknown[0]}: unknown resource")
        if not skip_devices:
            self._set_devices(r.get("devices"))
        v2mode = self.mode == "v2"
        steps: list[tuple[str, str, Any, Callable[[str, Any], None], Callable[[str, Any], None]]] = [
            ("memory", "memory", r.get("memory"), v1.apply_memory, v2.apply_memory),
            ("pids", "pids", r.get("pids"), v1.apply_pids, v1.apply_pids),
            ("blockIO", "blkio", r.get("blockIO"), v1.apply_blkio, v2.apply_io),
            ("hugepageLimits", "hugetlb", r.get("hugepageLimits"), v1.apply_hugetlb, v2.apply_hugetlb),
            ("rdma", "rdma", r.get("rdma"), v1.apply_rdma, v1.apply_rdma),
        ]
        cpu = as_dict(r.get("cpu"), "linux.resources.cpu")
        cpuset_part = {k: v for k, v in cpu.items() if k in ("cpus", "mems")}
        cpu_part = {k: v for k, v in cpu.items() if k not in ("cpus", "mems")}
        steps.append(("cpu", "cpuset", cpuset_part, v1.apply_cpuset, v1.apply_cpuset))
        steps.append(("cpu", "cpu", cpu_part, v1.apply_cpu, v2.apply_cpu))
        network = as_dict(r.get("network"), "linux.resources.network")
        if v2mode and is_set(network):
            raise v2.unsupported("network")
        classid = {k: v for k, v in network.items() if k == "classID"}
        prios = {k: v for k, v in network.items() if k == "priorities"}
        steps.append(("network.classID", "net_cls", classid, v1.apply_net_cls, v1.apply_net_cls))
        steps.append(("network.priorities", "net_prio", prios, v1.apply_net_prio, v1.apply_net_prio))
        for what, controller, value, on_v1, on_v2 in steps:
            if is_set(value):
                d = self._controller_dir(controller, what)
                (on_v2 if v2mode else on_v1)(d, value)
        if r.get("unified") and not v2mode:
            raise v2.no_unified()
        if is_set(r.get("unified")):
            v2.apply_unified(self.paths[UNIFIED], r["unified"])

    def _set_devices(self, spec_devices: Any) -> None:
        from ociruntime.cgroups import devices

        spec_rules = devices.parse_rules(spec_devices)
        rules = [*spec_rules, *devices.DEFAULT_RULES]
        d = self.paths.get(UNIFIED if self.mode == "v2" else "devices")
        if self.mode == "v2" and d is not None:
            # v2 has no devices controller: the rules become a BPF_CGROUP_DEVICE program that
            # replaces whatever this cgroup had (an update).  Hybrid hosts keep the v1 controller
            # below, as runc's fs driver does.
            from ociruntime.cgroups import ebpf

            ebpf.install(d, rules)
            return
        # No cgroup to hold the rules (v1 without a devices controller; a rootless container in
        # no cgroup of its own on v2, whose caller ignores this error as runc does).
        if d is None:
            if devices.allows_everything(rules):
                return
            what = ("the container has no cgroup of its own" if self.mode == "v2"
                    else "no devices cgroup controller is mounted")
            raise ConfigError(f"linux.resources.devices: {what}; refusing to run without device restrictions")
        devices.apply_v1(d, rules)

    # --- processes ---------------------------------------------------------------------------
    def _pids_dir(self) -> str:
        for name in _PIDS_PREFERENCE:
            if name in self.paths:
                return self.paths[name]
        return self._dirs()[0]

    def pids(self) -> list[int]:
        if not self.paths:
            return []  # a rootless container in no cgroup of its own (cgroups/rootless.py)
        found: set[int] = set()
        for d in self._walk(self._pids_dir()):
            try:
                text = files.read(d, "cgroup.procs")
            except OCIError:
                # A sub-cgroup removed between listing and reading holds no pids any more.
                if os.path.isdir(d):
                    raise
                continue
            found.update(int(x) for x in text.split())
        return sorted(found)

    def _walk(self, top: str) -> list[str]:
        """``top`` and every sub-cgroup below it, parents before children."""
        if not os.path.isdir(top):
            return []
        out = [top]
        for entry in os.scandir(top):
            if entry.is_dir(follow_symlinks=False):
                out.extend(self._walk(entry.path))
        return out

    # --- freezer ---------------------------------------------------------------------------
    def _freezer(self) -> tuple[str, str]:
        """("v1", dir) for the v1 freezer, else ("v2", dir) for the unified cgroup.freeze."""
        if "freezer" in self.paths:
            return "v1", self.paths["freezer"]
        if UNIFIED in self.paths:
            return "v2", self.paths[UNIFIED]
        raise OCIError("freeze: no freezer controller on this cgroup layout")

    def freeze(self) -> None:
        kind, d = self._freezer()
        if kind == "v1":
            self._freeze_v1(d)
        else:
            files.write(d, "cgroup.freeze", "1")
            if not self._wait_v2_frozen(d, True):
                files.write(d, "cgroup.freeze", "0")
                raise OCIError(f"freeze {d}: tasks did not stop in time")

    def _freeze_v1(self, d: str) -> None:
        # FROZEN may settle at FREEZING while a task is in an uninterruptible sleep; runc
        # re-writes FROZEN in a loop and kicks the freezer with a thaw now and then.
        for attempt in range(_FREEZE_ATTEMPTS):
            if attempt % 50 == 49:
                files.write(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            files.write(d, "freezer.state", "FROZEN")
            if files.read(d, "freezer.state").strip() == "FROZEN":
                return
            time.sleep(0.001)
        files.write(d, "freezer.state", "THAWED")
        raise OCIError(f"freeze {d}: tasks stuck in FREEZING")

    def _wait_v2_frozen(self, d: str, frozen: bool) -> bool:
        want = "frozen 1" if frozen else "frozen 0"
        for attempt in range(_FREEZE_ATTEMPTS // 10):
            if want in files.read(d, "cgroup.events").splitlines():
                return True
            _backoff(attempt)
        return False

    def thaw(self) -> None:
        kind, d = self._freezer()
        if kind == "v1":
            files.write(d, "freezer.state", "THAWED")
            return
        files.write(d, "cgroup.freeze", "0")
        if not self._wait_v2_frozen(d, False):
            raise OCIError(f"thaw {d}: cgroup still frozen (is a parent cgroup frozen?)")

    def is_frozen(self) -> bool:
        kind, d = self._freezer()
        try:
            if kind == "v1":
                return files.read(d, "freezer.state").strip() == "FROZEN"
            return "frozen 1" in files.read(d, "cgroup.events").splitlines()
        except OCIError:
            # A cgroup already removed (container stopped and deleted) is simply not frozen.
            if os.path.isdir(d):
                raise
            return False

    # --- teardown --------------------------------------------------------------------------
    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs())

    def destroy(self) -> None:
        if self.exists():
            self._thaw_for_destroy()
            for d in self._dirs():
                for sub in reversed(self._walk(d)):
                    self._rmdir_retry(sub)
        leaves = set(self._dirs())
        # Parents this manager created, deepest first; one still holding another container's
        # cgroup (a shared /libpod_parent) stays, as it would have for the other container.
        for d in sorted(set(self.created) - leaves, key=lambda p: p.count("/"), reverse=True):
            try:
                os.rmdir(d)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                    raise _oserror("rmdir", d, exc) from None

    def _thaw_for_destroy(self) -> None:
        # Frozen tasks cannot exit, so a frozen cgroup could never become empty.
        try:
            kind, d = self._freezer()
        except OCIError:
            return
        if not os.path.isdir(d):
            return
        if kind == "v1" and files.exists(d, "freezer.state"):
            files.write(d, "freezer.state", "THAWED")
        elif kind == "v2" and files.exists(d, "cgroup.freeze"):
            files.write(d, "cgroup.freeze", "0")

    def _rmdir_retry(self, d: str) -> None:
        # EBUSY: tasks that were killed are still exiting (or zombies not yet reaped by a
        # subreaper); they leave the cgroup shortly, so retry for a bounded time.
        for attempt in range(_RMDIR_ATTEMPTS):
            try:
                os.rmdir(d)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise _oserror("rmdir", d, exc) from None
            _backoff(attempt)
        raise OCIError(f"rmdir {d}: device or resource busy (processes are still in the cgroup)")


def from_state(d: dict[str, Any]) -> FsManager:
    """Rebuild a manager from :meth:`FsManager.to_state` output, checking its shape."""
    if not isinstance(d, dict) or d.get("driver") != DRIVER:
        raise OCIError(f"cgroup state: unknown driver {d.get('driver') if isinstance(d, dict) else d!r}")
    paths, mounts, created = d.get("paths"), d.get("mounts"), d.get("created", [])
    ok = (
        isinstance(paths, dict)
        and isinstance(mounts, dict)
        and isinstance(created, list)
        and d.get("mode") in ("v1", "v2", "hybrid")
        and all(isinstance(k, str) and isinstance(v, str) and os.path.isabs(v) for k, v in paths.items())
        and set(paths) == set(mounts)
        and all(isinstance(c, str) and os.path.isabs(c) for c in created)
    )
    if not ok:
        raise OCIError("cgroup state: malformed")
    return FsManager(d["mode"], paths, mounts, created)
