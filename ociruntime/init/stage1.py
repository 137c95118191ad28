"""Stage 1: the first forked child.  It enters the namespaces and forks the container init.

Why a separate stage: unshare(CLONE_NEWPID) and unshare(CLONE_NEWTIME) only affect *children* of
the caller, so the process that becomes pid 1 of the container has to be forked after them.
Stage 1 exits as soon as it has forked; the init is then reparented to ``create`` (a child
subreaper while it runs) and, once ``create`` exits, to the engine that called us.
"""

from __future__ import annotations

import os

from ociruntime import record
from ociruntime.init import container
from ociruntime.init.guard import block_imports
from ociruntime.linux import ids, rlimit
from ociruntime.linux.ns import CLONE_NEWUSER, NAMESPACES, setns_path, unshare, write_time_offsets
from ociruntime.plan import InitPlan
from ociruntime.rootfs.mounts import clone_bind_sources
from ociruntime.sync import Channel


def run(plan: InitPlan, chan: Channel, fifo_fd: int, console_fd: int, log_fd: int = -1) -> None:
    """Never returns: ends in ``os._exit``."""
    step = "stage 1"
    try:
        block_imports()
        # Wait until the parent has put us into the container's cgroup: the cgroup namespace
        # created below takes the current cgroup as its root, and the init inherits it.
        step = "wait for parent"
        chan.expect("go")
        if plan.rootfs.userns:
            # Still the runtime's credentials: clone the bind sources the user namespace might
            # not reach (rootfs/mounts.py).  The init receives the plan naming the clones' fds.
            step = "open bind mount sources"
            plan = record.replace(plan, rootfs=clone_bind_sources(plan.rootfs))
        if plan.process.rlimits and (plan.new_userns or any(t == "user" for t, _ in plan.join)):
            # Before the user namespace: raising a hard limit needs CAP_SYS_RESOURCE in the
            # initial namespace; the init inherits them (and sets the same values again).
            step = "set rlimits"
            for res, soft, hard in plan.process.rlimits:
                rlimit.set_rlimit(res, soft, hard)
        for nstype, path in plan.join:
            if nstype == "user":
                step = f"join user namespace {path}"
                setns_path(path, NAMESPACES["user"][0])
                # Our host uid may not be mapped there (then we are the overflow uid, and files
                # of unmapped owners deny us even with capabilities): become its root before
                # mounting anything, as runc's nsexec does.
                step = "become root in user namespace"
                ids.set_ids(0, 0)
        if plan.new_userns:
            step = "unshare user namespace"
            unshare(CLONE_NEWUSER)
            # The maps must be written from outside the namespace (by the parent, which holds
            # CAP_SETUID/CAP_SETGID over it); we then become root of the new namespace.
            chan.send("userns")
            chan.expect("mapped")
            step = "become root in user namespace"
            ids.set_ids(0, 0)
        for nstype, path in plan.join:
            if nstype != "user":
                step = f"join {nstype} namespace {path}"
                setns_path(path, NAMESPACES[nstype][0])
        if plan.unshare_flags:
            step = "unshare namespaces"
            unshare(plan.unshare_flags)
        if plan.time_offsets:
            step = "write time offsets"
            write_time_offsets(plan.time_offsets)
        step = "fork init"
        pid = os.fork()
        if pid == 0:
            container.run(plan, chan, fifo_fd, console_fd, log_fd)  # never returns
        chan.send("pid", pid=pid)
        os._exit(0)
    except BaseException as exc:
        chan.send_error(step, exc)
        os._exit(1)
