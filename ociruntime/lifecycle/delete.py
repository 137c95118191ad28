"""``delete``: remove a stopped (or, with ``--force``, any) container and everything it owns.

``--force`` also finishes what a killed command left: a directory without a readable
state.json is a create that died before saving it, undone from its intent record (``recover``);
a state.json is acted on as it stands, each step idempotent, so a delete killed midway is
completed by the next one.
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os
import select

from ociruntime.errors import ContainerNotFound, OCIError, StateError, suppress
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.kill import signal_all, signal_init
from ociruntime.lifecycle.start import run_post_hooks
from ociruntime.log import LOG
from ociruntime.state.proc import pidfd_for
from ociruntime.state.store import STATE_FILE, ContainerDir, Intent, Record, StateCorrupt, Store


def _wait_gone(rec: Record, timeout: float = 10.0) -> None:
    """Wait for the SIGKILLed init to exit: woken by its pidfd, no polling sleeps.

    We are not its parent, so "exited" means a zombie (or gone), which is when a pidfd turns
    readable; pidfd_for verifies the start time, so a reused pid is never waited for.
    """
    fd = pidfd_for(rec.pid, rec.pid_start)
    if fd is None:
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            raise OCIError(f"container init {rec.pid} did not exit after SIGKILL")
    finally:
        os.close(fd)


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
    if not force:
        with store.open(container_id) as cdir:
            rec = cdir.load()
            status = cdir.status(rec)
            # A created container was never started: deleting it is allowed (runc kills the init).
            if status in ("running", "paused"):
                raise StateError(f"cannot delete container {container_id} that is not stopped: {status}")
            destroy(cdir, rec)
        return
    # runc: --force on an unknown id succeeds (engines call it after a failed create).
    cdir = store.open_any(container_id)
    if cdir is None:
        return
    with cdir:
        try:
            rec = cdir.load()
        except (ContainerNotFound, StateCorrupt):
            # A create killed before it saved state.json (or a state.json that cannot be read):
            # undo what its intent record says it made.
            recover(cdir)
            return
        destroy(cdir, rec)


def _owned_cgroup(cgroup: dict) -> dict | None:
    """The intent's cgroup state restricted to the hierarchies whose container cgroup create
    made (listed in ``created``): a cgroup that existed before is not ours to empty or remove."""
    paths, mounts = cgroup.get("paths"), cgroup.get("mounts")
    created = cgroup.get("created")
    if not (isinstance(paths, dict) and isinstance(mounts, dict) and isinstance(created, list)):
        return None
    owned = {k: v for k, v in paths.items() if v in created and k in mounts}
    if not owned:
        return None
    return {**cgroup, "paths": owned, "mounts": {k: mounts[k] for k in owned}}


def recover(cdir: ContainerDir) -> None:
    """Undo a create that never saved state.json, from its intent record, then remove the
    directory.  Every step is idempotent (a dead pid, a gone cgroup, nothing mounted), so a
    recovery that is itself killed is finished by the next ``delete --force``."""
    try:
        intent = cdir.load_intent()
    except (OSError, ValueError) as e:
        # Written atomically, so only outside damage gets here; without it nothing can be known.
        LOG.warning(f"container {cdir.id}: intent record unreadable ({e}): removing the state "
                    "directory only")
        intent = None
    if intent is not None:
        undo_intent(intent)
    elif os.path.lexists(os.path.join(cdir.path, STATE_FILE)):
        # An unreadable state.json and no intent (a container of a runtime without it).
        LOG.warning(f"container {cdir.id}: no intent record: removing the state directory only")
    cdir.remove()


def undo_intent(intent: Intent) -> None:
    """Kill the processes, unmount, remove the cgroup directories that ``intent`` records."""
    from ociruntime.cgroups import manager_from_state

    owned = _owned_cgroup(intent.cgroup)
    if owned is not None:
        try:
            manager_from_state(owned)
        except OCIError as e:
            LOG.warning(f"intent record: {e}: leaving its cgroup directories alone")
            owned = None
    # The init first (verified by its start time): also when its cgroup was not ours to empty.
    if intent.pid:
        signal_init(intent.pid, intent.pid_start, _signal.SIGKILL)
    if owned is not None and manager_from_state(owned).exists():
        # A frozen task never handles SIGKILL (a kill --all or delete killed between freezing
        # and thawing leaves the cgroup frozen): thaw, then kill everything in it.  Stage 1, the
        # init and its children are all in it (create moves stage 1 in before it forks).
        with suppress(OSError, OCIError):
            manager_from_state(owned).thaw()
        with suppress(OSError, OCIError):
            signal_all(owned, _signal.SIGKILL)
    _wait_gone(Record(id="", bundle="", rootfs="", created="", pid=intent.pid,
                      pid_start=intent.pid_start))
    if intent.kept_mounts is not None and intent.rootfs:
        from ociruntime.rootfs.cleanup import unmount_beneath

        unmount_beneath(intent.rootfs, intent.kept_mounts)
    if owned is not None:
        # Leaves (with any sub-cgroup the container made) deepest first, retried while killed
        # tasks exit; then the parents create made, unless another container's cgroup holds them.
        manager_from_state(owned).destroy()
