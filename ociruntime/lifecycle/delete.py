"""``delete``: remove a stopped (or, with ``--force``, any) container and everything it owns."""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import time

from ociruntime.errors import ContainerNotFound, OCIError, StateError
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.kill import signal_all, signal_init
from ociruntime.lifecycle.start import run_post_hooks
from ociruntime.state.proc import is_alive
from ociruntime.state.store import ContainerDir, Record, Store


def _wait_gone(rec: Record, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while is_alive(rec.pid, rec.pid_start):
        if time.monotonic() > deadline:
            raise OCIError(f"container init {rec.pid} did not exit after SIGKILL")
        time.sleep(0.002)


def destroy(cdir: ContainerDir, rec: Record) -> None:
    """Kill what remains, remove the cgroup, run poststop hooks, remove the state directory."""
    signal_init(rec.pid, rec.pid_start, _signal.SIGKILL)
    if rec.cgroup:
        from ociruntime.cgroups import manager_from_state

        # A frozen process never handles SIGKILL: thaw first (a paused container, --force).
        try:
            manager_from_state(rec.cgroup).thaw()
        except (OSError, OCIError):
            pass
        # Without its own pid namespace the container's other processes do not die with the
        # init; kill them through the cgroup (runc does the same).
        try:
            signal_all(rec.cgroup, _signal.SIGKILL)
        except (OSError, OCIError):
            pass
    _wait_gone(rec)
    if rec.kept_mounts is not None:
        # The container mounted into the runtime's mount namespace: its mounts outlive it.
        # Before the cgroup goes, so a failure there cannot leave them behind.
        from ociruntime.rootfs.cleanup import unmount_beneath

        unmount_beneath(rec.rootfs, rec.kept_mounts)
    if rec.cgroup:
        manager_from_state(rec.cgroup).destroy()
    run_post_hooks(rec, "poststop", "stopped")
    cdir.remove()


def delete(ctx: Context, container_id: str, force: bool) -> None:
    store = Store(ctx.root)
    try:
        cdir = store.open(container_id)
    except ContainerNotFound:
        if not force:
            raise
        # runc: --force on an unknown id succeeds, removing a directory a create that died
        # before writing state.json may have left (engines call this after a failed create).
        store.remove_stale(container_id)
        return
    with cdir:
        rec = cdir.load()
        status = cdir.status(rec)
        # A created container was never started: deleting it is allowed (runc kills the init).
        if status in ("running", "paused") and not force:
            raise StateError(f"cannot delete container {container_id} that is not stopped: {status}")
        destroy(cdir, rec)

