"""exec's children: join a running container, then finish exactly like the init does.

The protocol is drawn in :mod:`ociruntime.sync` (with create's); the parent side is
:mod:`ociruntime.lifecycle.exec`.

Why two processes: setns(CLONE_NEWPID) moves only the caller's future children into the
container's pid namespace (as unshare does for create's stage 1).  Why the root fd: it is the
init's root whatever way the container got it (pivot_root, --no-pivot, no mount namespace at all),
so one chroot puts us there; it is the container's directory, never a host one, and it is closed
before anything of the image runs.  The joiner is non-dumpable before its first setns, so no
container process can reach its memory or /proc/<pid>/exe while it holds runtime state.
"""

from __future__ import annotations

import errno
import os

from ociruntime.init.console import setup_console
from ociruntime.init.guard import block_imports
from ociruntime.init.process import ExecNotFound, Tail, become, load_notify_filter, prepare
from ociruntime.linux import ids, keyring, prctl, rlimit
from ociruntime.linux.ns import CLONE_NEWUSER, setns_fd
from ociruntime.linux.procfs import open_procfs, write_proc
from ociruntime.plan import ExecPlan
from ociruntime.sync import Channel


class JoinTarget:
    """What the parent opened on the init before forking: handles, never paths."""

    __slots__ = ("ns_fds", "ns_flags", "pidfd", "root_fd")

    def __init__(self, pidfd: int, ns_flags: int, ns_fds: list[tuple[int, int]], root_fd: int) -> None:
        self.pidfd = pidfd
        self.ns_flags = ns_flags  # CLONE_NEW* of every namespace the init does not share with us
        self.ns_fds = ns_fds  # (flag, fd) in JOIN_ORDER, for kernels without setns(pidfd)
        self.root_fd = root_fd


def _join_namespaces(target: JoinTarget) -> None:
    if not target.ns_flags:
        return
    try:
        # One call joins them all, in the kernel's order (user first), and the pidfd pins the
        # init: no /proc path that could name a reused pid.
        setns_fd(target.pidfd, target.ns_flags, "container init pidfd")
        return
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: a kernel older than 5.8
            raise
    for flag, fd in target.ns_fds:
        setns_fd(fd, flag, f"namespace {flag:#x}")


def joiner(plan: ExecPlan, chan: Channel, target: JoinTarget, console_fd: int) -> None:
    """Child 1.  Never returns: ends in ``os._exit``."""
    step = "exec"
    try:
        block_imports()
        # Before the first setns: from then on container processes could ptrace or open
        # /proc/<pid>/* of a dumpable process of theirs.
        prctl.set_dumpable(False)
        step = "wait for parent"
        chan.expect("go")
        if plan.process.oom_score_adj is not None:
            # Still in the host's namespaces: the write goes to a fresh procfs of ours, and the
            # value is inherited by the process we fork.
            step = "set oom_score_adj"
            procfd = open_procfs()
            try:
                write_proc(procfd, "self/oom_score_adj", str(plan.process.oom_score_adj))
            finally:
                os.close(procfd)
        if plan.process.rlimits:
            # Before the user namespace: raising a hard limit needs CAP_SYS_RESOURCE in the
            # initial namespace (runc sets them from outside too); inherited by the fork.
            step = "set rlimits"
            for res, soft, hard in plan.process.rlimits:
                rlimit.set_rlimit(res, soft, hard)
        step = "join namespaces"
        _join_namespaces(target)
        if target.ns_flags & CLONE_NEWUSER:
            # Our host uid is usually not mapped there: become the namespace's root (runc
            # does), so permission checks before the user switch are root's, not "other"'s.
            step = "become root in user namespace"
            ids.set_ids(0, 0)
        step = "enter container root"
        os.fchdir(target.root_fd)
        os.chroot(".")
        os.close(target.root_fd)
        for _flag, fd in target.ns_fds:
            os.close(fd)
        os.close(target.pidfd)
        os.chdir("/")
        step = "fork process"
        pid = os.fork()
        if pid == 0:
            _process(plan, chan, console_fd)  # never returns
        chan.send("pid", pid=pid)
        os._exit(0)
    except BaseException as exc:
        chan.send_error(step, exc)
        os._exit(1)


def _process(plan: ExecPlan, chan: Channel, console_fd: int) -> None:
    """Child 2, inside the container's pid namespace.  Never returns."""
    proc = plan.process
    step = ["exec"]
    try:
        step[0] = "wait for parent"
        chan.expect("go")
        if not proc.terminal:
            # A session of its own (runc's nsexec does this for every process): the caller's
            # controlling terminal must not be reachable from the container (TIOCSTI).
            step[0] = "setsid"
            os.setsid()
        if proc.terminal:
            # The pty comes from the container's devpts (we are in its root); no /dev/console bind:
            # that belongs to the init.  setup_console also makes our own session.
            step[0] = "set up console"
            setup_console(console_fd, proc.console_size, bind_console=False,
                          clear_onlcr=plan.clear_onlcr)
        if plan.new_keyring:
            step[0] = "join session keyring"
            try:
                keyring.join_session_keyring(keyring.session_keyring_name(plan.container_id))
            except OSError as e:
                if e.errno not in (38, 13, 1, 122):  # ENOSYS, EACCES, EPERM, EDQUOT
                    raise
        seccomp = load_notify_filter(proc, plan.seccomp, chan, step)
        step[0] = "prepare process"
        prep = prepare(proc)
        # The channel stays open (close-on-exec) so that a failure up to execve still reaches
        # the parent; execve closing it is the parent's "it runs".
        keep = set(range(3 + plan.preserve_fds)) | {chan.fileno()}
        become(proc, prep, Tail(seccomp, keep), step)
    except BaseException as exc:
        chan.send_error(step[0], exc)
        os._exit(127 if isinstance(exc, ExecNotFound) else 1)
