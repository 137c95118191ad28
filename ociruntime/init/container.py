"""The container init (stage 2): pid 1 of the container until it execs the user process.

A straight list of small steps.  Order matters and each comment says why a step sits where it
sits; the model is runc's ``standard_init_linux.go`` and CPython's ``_posixsubprocess``.
Nothing here imports lazily (the import guard is active) or reads config.json: every value comes
from the :class:`~ociruntime.plan.InitPlan` computed before fork.
"""

from __future__ import annotations

import os
import stat

from ociruntime.hooks import run_hooks
from ociruntime.init.console import setup_console
from ociruntime.linux import caps, fds, ids, keyring, prctl, rlimit, sched, signals
from ociruntime.linux.ns import loopback_up, set_domainname, set_hostname
from ociruntime.linux.personality import set_personality
from ociruntime.linux.procfs import open_procfs, write_proc
from ociruntime.linux.seccomp import load_filter
from ociruntime.plan import InitPlan, ProcessPlan
from ociruntime.rootfs.mounts import prepare_rootfs
from ociruntime.rootfs.paths import finalize_rootfs
from ociruntime.rootfs.pivot import pivot
from ociruntime.sync import Channel


class ExecNotFound(Exception):
    """The executable cannot be found; the message follows runc's wording, which podman maps
    (``executable file not found in $PATH`` -> 127, ``no such file or directory`` -> 127)."""


def _lookup(proc: ProcessPlan) -> bytes:
    """Resolve args[0] like Go's exec.LookPath with the container's PATH (runc does the same)."""
    name = proc.args[0]
    if b"/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise ExecNotFound(f'exec: "{os.fsdecode(name)}": stat {os.fsdecode(name)}: '
                               f"{os.strerror(e.errno or 0).lower()}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ExecNotFound(f'exec: "{os.fsdecode(name)}": is a directory')
        # Go's findExecutable: no execute bit at all is "permission denied", reported by create
        # (podman maps that text to 126) instead of a failed execve after start.
        if not st.st_mode & 0o111:
            raise ExecNotFound(f'exec: "{os.fsdecode(name)}": permission denied')
        return name
    for d in proc.env_path.split(":"):
        cand = os.path.join(os.fsencode(d or "."), name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(cand, os.X_OK):
            return cand
    raise ExecNotFound(f'exec: "{os.fsdecode(name)}": executable file not found in $PATH')


def _oci_state(plan: InitPlan, status: str) -> dict:
    return {"ociVersion": "1.3.0", "id": plan.container_id, "status": status, "pid": os.getpid(),
            "bundle": plan.bundle, "annotations": plan.annotations}


def _set_user(proc: ProcessPlan) -> None:
    """Switch to the process user keeping only the configured capabilities (runc finalizeNamespace)."""
    if proc.caps is not None:
        # The bounding set can only be lowered while CAP_SETPCAP is effective, i.e. before setuid.
        caps.drop_bounding(proc.caps.bounding)
    # Keep permitted caps across the uid change; the effective set is restored by set_caps.
    caps.keep_caps(True)
    ids.set_groups(list(proc.additional_gids))
    ids.set_ids(proc.uid, proc.gid)
    caps.keep_caps(False)
    if proc.caps is not None:
        caps.set_caps(proc.caps)


def _procfs_writes(plan: InitPlan, procfd: int) -> None:
    for relpath, value in plan.sysctls:
        write_proc(procfd, relpath, value)


def run(plan: InitPlan, chan: Channel, fifo_fd: int, console_fd: int) -> None:
    """Set the container up and exec the user process.  Never returns."""
    proc = plan.process
    step = "init"
    try:
        # Stage 1 reports our pid on the shared channel; nothing of ours may overtake it.
        step = "wait for parent"
        chan.expect("init-go")
        if not proc.terminal:
            # A new session, so the container is not in the caller's process group or terminal
            # (with a terminal, setup_console makes the session and its controlling tty).
            step = "setsid"
            os.setsid()
        # The procfs handle is a fresh proc instance of *our* pid namespace, opened before the
        # image's files are touched: every /proc write goes through it, never through the
        # rootfs path, so a bind-mounted decoy in the image cannot redirect it (CVE-2025-52881).
        step = "open procfs"
        procfd = open_procfs()
        if proc.oom_score_adj is not None:
            step = "set oom_score_adj"
            write_proc(procfd, "self/oom_score_adj", str(proc.oom_score_adj))
        if plan.new_netns:
            step = "bring up loopback"
            loopback_up()
        if plan.new_keyring:
            # A session keyring per container, so containers do not share the host's keys.
            step = "join session keyring"
            try:
                keyring.join_session_keyring(keyring.session_keyring_name(plan.container_id))
                keyring.set_keyring_perm(keyring.keyring_search_bits(plan.new_userns))
            except OSError as e:
                if e.errno not in (38, 13, 1):  # ENOSYS, EACCES, EPERM: keyrings unavailable here
                    raise
        step = "prepare rootfs"
        prepare_rootfs(plan.rootfs)
        if plan.parent_hooks:
            # prestart/createRuntime hooks run on the host, by the parent, once mounts exist.
            step = "wait for runtime hooks"
            chan.send("hooks")
            chan.expect("hooks-done")
        if plan.hooks.get("createContainer"):
            # In the container's mount namespace, before pivot_root (runtime.md).
            step = "createContainer hooks"
            run_hooks("createContainer", plan.hooks["createContainer"], _oci_state(plan, "creating"))
        step = "pivot root"
        pivot(plan.rootfs)
        if proc.terminal:
            # After pivot_root: the pty must come from the container's own devpts.
            step = "set up console"
            setup_console(console_fd, proc.console_size)  # sends the master, closes the socket
        # The working directory is created while the root is still writable (runc's createCwd);
        # after pivot_root, so any symlink in the path resolves inside the container.
        step = "create cwd"
        _make_cwd(proc.cwd)
        step = "finalize rootfs"
        finalize_rootfs(plan.rootfs)
        if plan.hostname is not None:
            step = "set hostname"
            set_hostname(plan.hostname)
        if plan.domainname is not None:
            step = "set domainname"
            set_domainname(plan.domainname)
        if plan.sysctls:
            step = "write sysctls"
            _procfs_writes(plan, procfd)
        # Limits and scheduling are set while still root: raising rlimits or choosing a realtime
        # policy can need capabilities the user process will not have.
        for res, soft, hard in proc.rlimits:
            step = "set rlimits"
            rlimit.set_rlimit(res, soft, hard)
        if plan.personality:
            step = "set personality"
            set_personality(plan.personality.get("domain", "LINUX"), plan.personality.get("flags") or [])
        if proc.scheduler:
            step = "set scheduler"
            s = proc.scheduler
            sched.set_scheduler(s.get("policy", "SCHED_OTHER"), s.get("priority", 0), s.get("nice", 0),
                                s.get("flags") or [], s.get("runtime", 0), s.get("deadline", 0),
                                s.get("period", 0))
        if proc.io_priority:
            step = "set io priority"
            sched.set_ioprio(proc.io_priority["class"], proc.io_priority.get("priority", 0))
        if proc.exec_cpu_affinity and proc.exec_cpu_affinity.get("initial"):
            step = "set cpu affinity"
            sched.set_affinity(sched.parse_cpu_list(proc.exec_cpu_affinity["initial"]))
        if proc.no_new_privs:
            step = "set no_new_privs"
            prctl.set_no_new_privs()
        late_seccomp = plan.seccomp is not None and proc.no_new_privs and not plan.seccomp.notify
        if plan.seccomp is not None and not late_seccomp:
            # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it before dropping
            # caps.  A notify filter is loaded here too: its listener fd must reach the parent.
            step = "load seccomp"
            _load_seccomp(plan, chan)
        step = "set user"
        _set_user(proc)
        if proc.umask is not None:
            os.umask(proc.umask)
        # chdir after the user switch so that the permission check is the user's (runc does too);
        # getcwd must then answer inside our root (an inherited fd cwd would not: CVE-2024-21626).
        step = "chdir"
        os.chdir(proc.cwd)
        if not os.getcwd().startswith("/"):
            raise OSError(2, f"cwd {proc.cwd} is outside the container root")
        step = "look up executable"
        exe = _lookup(proc)
        step = "report ready"
        chan.send("ready")
        chan.close()
        # Block until `start` opens the fifo for reading.  The fifo was opened O_PATH before
        # pivot_root; reopening it through our own procfs fd reaches it without any host path.
        step = "wait for start"
        wfd = os.open(f"self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=procfd)
        os.write(wfd, b"0")
        os.close(wfd)
        os.close(fifo_fd)
        os.close(procfd)
        if plan.hooks.get("startContainer"):
            step = "startContainer hooks"
            run_hooks("startContainer", plan.hooks["startContainer"], _oci_state(plan, "created"))
        if proc.exec_cpu_affinity and proc.exec_cpu_affinity.get("final"):
            step = "set cpu affinity"
            sched.set_affinity(sched.parse_cpu_list(proc.exec_cpu_affinity["final"]))
        # Last steps before execve: nothing of ours may reach the user process.
        step = "close fds"
        keep = set(range(3 + plan.preserve_fds))
        fds.close_fds_except(keep)
        if late_seccomp:
            # With no_new_privs the filter goes on last, so it constrains as little of our own
            # set-up as possible (runc does the same).
            step = "load seccomp"
            _load_seccomp(plan, None)
        signals.reset_all_signals()
        step = "exec"
        os.execve(exe, list(proc.args), _env_dict(proc.env))
    except BaseException as exc:
        try:
            chan.send_error(step, exc)
        except Exception:
            pass
        if step in ("wait for start", "startContainer hooks", "close fds", "load seccomp", "exec"):
            # create has returned already: the error can only go to the container's stderr.
            try:
                os.write(2, f"ociruntime init: {step}: {exc}\n".encode())
            except OSError:
                pass
        os._exit(127 if isinstance(exc, ExecNotFound) else 1)


def _env_dict(env: tuple[bytes, ...]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for e in env:
        k, _, v = e.partition(b"=")
        out[k] = v
    return out


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


def _load_seccomp(plan: InitPlan, chan: Channel | None) -> None:
    flt = plan.seccomp
    listener = load_filter(flt.bpf, flt.flags)  # type: ignore[attr-defined]
    if listener and chan is not None:
        chan.send("seccomp-listener", fds=[listener])
        os.close(listener)
