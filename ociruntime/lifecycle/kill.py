"""``kill``: signal the init (or, with ``--all``, every process of the container's cgroup)."""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os

from ociruntime.errors import OCIError, StateError
from ociruntime.lifecycle.context import Context
from ociruntime.linux.signames import parse_signal
from ociruntime.state.proc import pidfd_for
from ociruntime.state.store import Store


def signal_init(pid: int, started: int, sig: int) -> bool:
    """Signal the init through a pidfd verified by start time; False if it is gone."""
    fd = pidfd_for(pid, started)
    if fd is None:
        return False
    try:
        _signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def signal_all(cgroup_state: dict, sig: int) -> None:
    """Signal every process in the cgroup; frozen while doing it so none can fork away."""
    from ociruntime.cgroups import manager_from_state

    manager = manager_from_state(cgroup_state)
    try:
        was_frozen = manager.is_frozen()
    except OCIError:
        # No freezer in the hierarchies we hold (a partial cgroup delete --force undoes, a v1
        # host without the controller): signal without freezing, as runc does.
        was_frozen = True
    if not was_frozen:
        try:
            manager.freeze()
        except (OSError, OCIError):
            pass
    try:
        for pid in manager.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        if not was_frozen:
            try:
                manager.thaw()
            except (OSError, OCIError):
                pass


def kill(ctx: Context, container_id: str, sig_text: str, all_processes: bool) -> None:
    try:
        sig = parse_signal(sig_text)
    except ValueError as e:
        raise OCIError(str(e)) from None
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        status = cdir.status(rec)
        if all_processes:
            if rec.cgroup and rec.cgroup.get("paths"):
                signal_all(rec.cgroup, sig)
            elif status != "stopped":
                # A rootless container in no cgroup of its own (cgroups/rootless.py): only the
                # init can be reached; with its own pid namespace, SIGKILL takes every process.
                signal_init(rec.pid, rec.pid_start, sig)
            return
        if status == "stopped" or not signal_init(rec.pid, rec.pid_start, sig):
            raise StateError("container not running")
