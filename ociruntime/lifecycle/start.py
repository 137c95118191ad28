"""``start``: release the init blocked on ``exec.fifo``, then run the poststart hooks."""

from __future__ import annotations

import os
import select
import time

from ociruntime.errors import OCIError, StateError
from ociruntime.lifecycle.context import Context
from ociruntime.log import LOG
from ociruntime.state.proc import exec_done, is_alive
from ociruntime.state.store import Record, Store
from ociruntime.waits import wait_timeout


def run_post_hooks(rec: Record, kind: str, status: str) -> None:
    """poststart/poststop failures are warnings: the lifecycle goes on (runtime.md)."""
    if not rec.hooks.get(kind):
        return
    # Imported only when there are hooks: most containers have none, and start/delete run often.
    from ociruntime.hooks import Hook, run_hooks

    hooks = tuple(Hook(path=h["path"], args=tuple(h["args"]), env=tuple(h["env"]), timeout=h["timeout"])
                  for h in rec.hooks[kind])
    try:
        # runtime.md: a failing poststart/poststop hook is a warning, and the remaining hooks run.
        run_hooks(kind, hooks, rec.oci_state(status), on_error=lambda e: LOG.warning(str(e)))
    except OCIError as e:
        LOG.warning(str(e))


class _StartedLate(OCIError):
    """The init took the start signal but did not reach execve in time: it is started."""


def _released_before(rec: Record) -> bool:
    """An earlier ``start``, killed after the init took its byte and before it recorded that,
    did release the init: it is alive and runs the user process now."""
    return is_alive(rec.pid, rec.pid_start) and exec_done(rec.pid, rec.init_exe)


def _release(fifo: str, rec: Record) -> None:
    """Open the fifo for reading (unblocking the init's open), take its one byte, then read to
    EOF: the init holds the write end until execve closes it, so when this returns the user
    process runs (or the init died on the way, which the container's state then shows)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        got = False
        deadline = time.monotonic() + wait_timeout()
        while True:
            if time.monotonic() > deadline:
                if got:
                    raise _StartedLate(f"timed out after {wait_timeout():g}s waiting for the "
                                       "container init to run the process")
                raise OCIError(f"timed out after {wait_timeout():g}s waiting for the container init "
                               "to take the start signal")
            events = poller.poll(100)
            if events:
                try:
                    data = os.read(fd, 1)
                except BlockingIOError:
                    data = b""
                if data:
                    got = True
                    continue
                if got:
                    return  # EOF after the byte: execve (or exit) closed the write end
                if _released_before(rec):
                    return  # EOF: it took its byte from an earlier start, then exec'd
                raise OCIError("container init exited before it could be started")
            if not is_alive(rec.pid, rec.pid_start):
                if got:
                    return
                raise OCIError("container init exited before it could be started")
            if not got and _released_before(rec):
                return  # no writer will come: it exec'd before we opened the fifo
    finally:
        os.close(fd)


def start(ctx: Context, container_id: str) -> None:
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        status = cdir.status(rec)
        if status != "created":
            if status == "stopped":
                raise StateError("cannot start a container that has stopped")
            raise StateError("cannot start an already running container")
        try:
            _release(cdir.fifo_path, rec)
        except _StartedLate:
            # It runs (or will): record that, so state, delete and a second start agree.
            os.unlink(cdir.fifo_path)
            rec.started = True
            cdir.save(rec)
            raise
        os.unlink(cdir.fifo_path)
        rec.started = True
        cdir.save(rec)
        run_post_hooks(rec, "poststart", "running")
