"""The container init (stage 2): pid 1 of the container until it execs the user process.

A straight list of small steps.  Order matters and each comment says why a step sits where it
sits; the model is runc's ``standard_init_linux.go`` and CPython's ``_posixsubprocess``.
Nothing here imports lazily (the import guard is active) or reads config.json: every value comes
from the :class:`~ociruntime.plan.InitPlan` computed before fork.
"""

from __future__ import annotations

import os

from ociruntime.errors import describe_oserror
from ociruntime.hooks import run_hooks
from ociruntime.init.console import setup_console
from ociruntime.init.process import ExecNotFound, Tail, become, load_notify_filter, prepare, reopen_dev_null
from ociruntime.linux import keyring, sched
from ociruntime.linux.ns import loopback_up, set_domainname, set_hostname
from ociruntime.linux.personality import set_personality
from ociruntime.linux.procfs import open_procfs, write_proc
from ociruntime.log import LOG
from ociruntime.plan import InitPlan
from ociruntime.rootfs.mounts import prepare_rootfs
from ociruntime.rootfs.paths import finalize_rootfs
from ociruntime.rootfs.pivot import pivot
from ociruntime.sync import Channel


def _oci_state(plan: InitPlan, status: str) -> dict:
    return {"ociVersion": "1.3.0", "id": plan.container_id, "status": status, "pid": os.getpid(),
            "bundle": plan.bundle, "annotations": plan.annotations}


def _procfs_writes(plan: InitPlan, procfd: int) -> None:
    for relpath, value in plan.sysctls:
        write_proc(procfd, relpath, value)


def run(plan: InitPlan, chan: Channel, fifo_fd: int, console_fd: int, log_fd: int = -1) -> None:
    """Set the container up and exec the user process.  Never returns.

    ``log_fd`` is the caller's ``--log`` file (close-on-exec, -1 without one): after ``start``
    the parent is gone, and a failure before execve must still reach the log as a JSON line.
    """
    proc = plan.process
    step = ["init"]
    started = False
    try:
        procfd = _setup(plan, chan, console_fd, step)
        late = load_notify_filter(proc, plan.seccomp, chan, step)
        step[0] = "prepare process"
        prep = prepare(proc)
        if proc.exec_cpu_affinity and proc.exec_cpu_affinity.get("initial"):
            step[0] = "set cpu affinity"
            sched.set_affinity(sched.parse_cpu_list(proc.exec_cpu_affinity["initial"]))
        step[0] = "report ready"
        chan.send("ready")
        chan.close()
        started = True
        # Block until `start` opens the fifo for reading.  The fifo was opened O_PATH before
        # pivot_root; reopening it through our own procfs fd reaches it without any host path.
        step[0] = "wait for start"
        wfd = os.open(f"self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=procfd)
        os.write(wfd, b"0")
        os.close(fifo_fd)
        os.close(procfd)
        hooks = None
        if plan.hooks.get("startContainer"):
            def hooks() -> None:
                run_hooks("startContainer", plan.hooks["startContainer"], _oci_state(plan, "created"))
        # The fifo's write end stays open (close-on-exec) until execve: `start` reads to EOF, so
        # it returns, and runs poststart hooks, only once the user process runs (runc does too).
        keep = set(range(3 + plan.preserve_fds)) | {wfd}
        if log_fd >= 0:
            keep.add(log_fd)
        become(proc, prep, Tail(late, keep, hooks, log_fd), step)
    except BaseException as exc:
        _report(chan, step[0], exc, started, log_fd)
        os._exit(127 if isinstance(exc, ExecNotFound) else 1)


def _setup(plan: InitPlan, chan: Channel, console_fd: int, step: list[str]) -> int:
    """Everything from the parent's go to a finished root: namespaces' contents, mounts, names.

    Returns the private procfs handle, which the init keeps until start released it."""
    proc = plan.process
    # Stage 1 reports our pid on the shared channel; nothing of ours may overtake it.
    step[0] = "wait for parent"
    chan.expect("init-go")
    if not proc.terminal:
        # A new session, so the container is not in the caller's process group or terminal
        # (with a terminal, setup_console makes the session and its controlling tty).
        step[0] = "setsid"
        os.setsid()
    # The procfs handle is a fresh proc instance of *our* pid namespace, opened before the
    # image's files are touched: every /proc write goes through it, never through the
    # rootfs path, so a bind-mounted decoy in the image cannot redirect it (CVE-2025-52881).
    step[0] = "open procfs"
    procfd = open_procfs()
    if proc.oom_score_adj is not None:
        step[0] = "set oom_score_adj"
        write_proc(procfd, "self/oom_score_adj", str(proc.oom_score_adj))
    if plan.new_netns:
        step[0] = "bring up loopback"
        loopback_up()
    if plan.new_keyring:
        # A session keyring per container, so containers do not share the host's keys.
        step[0] = "join session keyring"
        try:
            keyring.join_session_keyring(keyring.session_keyring_name(plan.container_id))
            keyring.set_keyring_perm(keyring.keyring_search_bits(plan.new_userns))
        except OSError as e:
            if e.errno not in (38, 13, 1):  # ENOSYS, EACCES, EPERM: keyrings unavailable here
                raise
    step[0] = "prepare rootfs"
    prepare_rootfs(plan.rootfs)
    if plan.parent_hooks:
        # prestart/createRuntime hooks run on the host, by the parent, once mounts exist.
        step[0] = "wait for runtime hooks"
        chan.send("hooks")
        chan.expect("hooks-done")
    if plan.hooks.get("createContainer"):
        # In the container's mount namespace, before pivot_root (runtime.md); in the rootfs,
        # as runc runs them (it has fchdir'ed to the rootfs there).
        step[0] = "createContainer hooks"
        run_hooks("createContainer", plan.hooks["createContainer"], _oci_state(plan, "creating"),
                  cwd=plan.rootfs.rootfs)
    step[0] = "pivot root"
    pivot(plan.rootfs)
    step[0] = "reopen /dev/null"
    reopen_dev_null()
    if proc.terminal:
        # After pivot_root: the pty must come from the container's own devpts.
        step[0] = "set up console"
        setup_console(console_fd, proc.console_size, clear_onlcr=plan.clear_onlcr)  # closes the socket
    # The working directory is created while the root is still writable (runc's createCwd);
    # after pivot_root, so any symlink in the path resolves inside the container.
    step[0] = "create cwd"
    _make_cwd(proc.cwd)
    step[0] = "finalize rootfs"
    finalize_rootfs(plan.rootfs)
    if plan.hostname is not None:
        step[0] = "set hostname"
        set_hostname(plan.hostname)
    if plan.domainname is not None:
        step[0] = "set domainname"
        set_domainname(plan.domainname)
    if plan.sysctls:
        step[0] = "write sysctls"
        _procfs_writes(plan, procfd)
    if plan.personality:
        step[0] = "set personality"
        set_personality(plan.personality.get("domain", "LINUX"), plan.personality.get("flags") or [])
    return procfd


def _report(chan: Channel, step: str, exc: BaseException, started: bool, log_fd: int) -> None:
    """Best effort: the parent while create runs; after start its stderr and the --log file.

    Any of these writes may be denied by the container's seccomp filter; nothing else is left.
    """
    if not started:
        try:
            chan.send_error(step, exc)
        except Exception:
            pass
        return
    msg = f"{step}: {describe_oserror(exc) if isinstance(exc, OSError) else exc}"
    try:
        os.write(2, f"ociruntime init: {msg}\n".encode())
    except OSError:
        pass
    if log_fd >= 0:
        try:
            os.write(log_fd, LOG.format_line("error", f"container init: {msg}").encode())
        except OSError:
            pass


def _make_cwd(cwd: str) -> None:
    """Create the working directory inside the (already pivoted) root, like runc's createCwd."""
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
    except FileExistsError:
        pass
    except OSError as e:
        # A read-only root or a non-directory: the chdir below reports the precise error.
        if e.errno not in (30, 20, 13):
            raise
