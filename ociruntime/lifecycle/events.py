"""``events``: a container's resource statistics and OOM notifications as JSON lines.

runc's envelope, one object per line: ``{"type":"stats","id":ID,"data":{...}}`` (the data in
``types.Stats`` shape, cgroups/stats.py) and ``{"type":"oom","id":ID}``.  ``--stats`` prints one
stats event; otherwise stats come every interval until the container's init exits.

The loop sleeps in poll(2) on two descriptors instead of polling files:
- a pidfd of the init, readable once it has exited (pidfd_open(2)): the end of the stream;
- an OOM wake-up: on v1 an eventfd registered on memory.oom_control through
  cgroup.event_control (cgroup-v1/memory.rst, "Memory thresholds"/"OOM Control"); on v2
  memory.events itself, which kernfs reports with POLLPRI when a counter changes
  (cgroup-v2.rst: "a value change in this file generates a file modified event").
On v1 each notification is one OOM event (as in runc); on v2 a wake-up only means "look
again", and a new OOM is an increase of the ``oom_kill`` counter.

The container lock is held only to look the container up: a stream can last for hours and
must not block ``delete``.
"""

from __future__ import annotations

import errno
import math
import os
import re
import select
import time
from collections.abc import Callable
from typing import Any

from ociruntime.cgroups import files, stats
from ociruntime.cgroups.base import UNIFIED
from ociruntime.errors import OCIError, StateError, UsageError
from ociruntime.lifecycle.context import Context
from ociruntime.state.proc import pidfd_for
from ociruntime.state.store import Store

Emit = Callable[[dict[str, Any]], None]

DEFAULT_INTERVAL = "5s"
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (``5s``, ``100ms``, ``1m30s``, ``1.5h``), in seconds."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise UsageError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise UsageError(f'time: invalid duration "{text}"')
        unit = _DURATION_UNITS.get(m.group(2))
        if unit is None:
            raise UsageError(f'time: unknown unit "{m.group(2)}" in duration "{text}"')
        total += float(m.group(1)) * unit
        pos = m.end()
    return sign * total


def stats_event(container_id: str, mode: str, paths: dict[str, str]) -> dict[str, Any]:
    return {"type": "stats", "id": container_id, "data": stats.collect(mode, paths)}


def oom_event(container_id: str) -> dict[str, Any]:
    return {"type": "oom", "id": container_id}


class OomWatch:
    """A descriptor that wakes poll(2) on OOM, and the count of OOM events reported so far.

    On v1 every eventfd notification is one OOM (runc reports them one to one); the kernel
    sends it when the cgroup enters OOM, before the victim is killed, so the kill counter cannot
    be read at that moment.  On v2 a wake-up only says memory.events changed: the ``oom_kill``
    counter tells whether anything new happened.  :meth:`catch_up` reports kills no wake-up
    announced (an OOM that killed the init races with the pidfd).
    """

    def __init__(self, mode: str, paths: dict[str, str]) -> None:
        self.mode = mode
        self.paths = paths
        self.fd = -1
        self.events = 0
        self.reported = 0
        self._control_fd = -1
        self._memdir = paths.get(UNIFIED if mode == "v2" else "memory", "")
        self._start = stats.oom_kills(mode, paths)

    @classmethod
    def open(cls, mode: str, paths: dict[str, str]) -> OomWatch | None:
        """The watch for this cgroup, or None when there is no memory controller to watch."""
        watch = cls(mode, paths)
        if watch._start is None:
            return None
        try:
            if mode == "v2":
                watch._open_v2()
            else:
                watch._open_v1()
        except BaseException:
            watch.close()
            raise
        return watch

    def _open_v1(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._control_fd = os.open(os.path.join(self._memdir, "memory.oom_control"),
                                   os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        files.write(self._memdir, "cgroup.event_control", f"{self.fd} {self._control_fd}")
        self.events = select.POLLIN

    def _open_v2(self) -> None:
        self.fd = os.open(os.path.join(self._memdir, "memory.events"),
                          os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        # kernfs arms the change notification of an open file when the file is read.
        os.read(self.fd, 4096)
        self.events = select.POLLPRI | select.POLLERR

    def wake(self) -> int:
        """Consume a wake-up (poll blocks again until the next); return the new OOM events.

        Raises OCIError when the wake-up only says the cgroup was removed.
        """
        if self.mode == "v2":
            try:
                os.lseek(self.fd, 0, os.SEEK_SET)
                os.read(self.fd, 4096)
            except OSError as exc:
                # kernfs keeps a removed cgroup's open files polling as changed (POLLERR) and
                # fails their reads with ENODEV: the end of the watch, not an OOM.
                if exc.errno != errno.ENODEV:
                    raise
                raise OCIError(f"{os.path.join(self._memdir, 'memory.events')}: cgroup removed") from None
            return self.catch_up()
        try:
            count = os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0
        # The eventfd is also signalled when the cgroup is removed: that is no OOM (runc checks
        # the same way, by the control file's absence).
        if not files.exists(self._memdir, "cgroup.event_control"):
            return 0
        self.reported += count
        return count

    def catch_up(self) -> int:
        """Kills counted by the kernel since the start and not reported yet."""
        now = stats.oom_kills(self.mode, self.paths)
        if now is None or self._start is None:
            return 0
        new = now - self._start - self.reported
        if new <= 0:
            return 0
        self.reported += new
        return new

    def close(self) -> None:
        for fd in (self.fd, self._control_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._control_fd = -1


def _open_container(ctx: Context, container_id: str) -> tuple[dict[str, Any], int]:
    """The cgroup state and a pidfd of the init; an error unless the container is live."""
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        if cdir.status(rec) == "stopped":
            raise StateError(f"container with id {container_id} is not running")
        if not rec.cgroup:
            raise StateError(f"container {container_id} has no cgroup")
        pidfd = pidfd_for(rec.pid, rec.pid_start)
        if pidfd is None:
            raise StateError(f"container with id {container_id} is not running")
        return rec.cgroup, pidfd


def events(ctx: Context, container_id: str, interval: float, once: bool, emit: Emit) -> None:
    """Emit one stats event (``once``), or stream stats and OOM events until the init exits."""
    if interval <= 0:
        raise UsageError("duration interval must be greater than 0")
    from ociruntime.cgroups import manager_from_state

    cgroup_state, pidfd = _open_container(ctx, container_id)
    try:
        manager = manager_from_state(cgroup_state)
        if once:
            emit(stats_event(container_id, manager.mode, manager.paths))
            return
        _stream(container_id, manager.mode, manager.paths, pidfd, interval, emit)
    finally:
        os.close(pidfd)


def _emit_ooms(watch: OomWatch | None, container_id: str, emit: Emit, woken: bool) -> bool:
    """Report the OOM kills not reported yet; False once the cgroup is gone."""
    if watch is None:
        return True
    try:
        count = watch.wake() if woken else watch.catch_up()
    except OCIError:
        # The cgroup went away (the container was deleted): nothing more to report.
        return False
    for _ in range(count):
        emit(oom_event(container_id))
    return True


def _gone(pidfd: int) -> bool:
    """True once the init has exited (its pidfd polls readable); waits a moment for the kernel."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(1000))


def _stream(container_id: str, mode: str, paths: dict[str, str], pidfd: int, interval: float,
            emit: Emit) -> None:
    watch = OomWatch.open(mode, paths)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if watch is not None:
        poller.register(watch.fd, watch.events)
    # Like Go's time.Tick, the first stats come one interval after the start.
    next_tick = time.monotonic() + interval
    try:
        while True:
            timeout_ms = max(0, math.ceil((next_tick - time.monotonic()) * 1000))
            ready = {fd for fd, _ in poller.poll(timeout_ms)}
            if watch is not None and watch.fd in ready:
                if not _emit_ooms(watch, container_id, emit, woken=True):
                    # A removed cgroup's file would poll ready for good: stop watching it.
                    poller.unregister(watch.fd)
            if pidfd in ready:
                # The init is gone; an OOM that killed it may not have woken us yet.
                _emit_ooms(watch, container_id, emit, woken=False)
                return
            now = time.monotonic()
            if now >= next_tick:
                try:
                    event = stats_event(container_id, mode, paths)
                except (OSError, OCIError):
                    # Deleted between the poll and the read (the init's exit may be noticed a
                    # moment after the cgroup is gone): the stream ends, as it would have.
                    if _gone(pidfd):
                        return
                    raise
                emit(event)
                # A tick missed while busy is dropped, as Go's ticker does, not made up in a burst.
                next_tick += interval
                if next_tick <= now:
                    next_tick = now + interval
    finally:
        if watch is not None:
            watch.close()
