"""``exec``: run a new process inside a running container (runc's grammar and behaviour).

The parent side of the protocol drawn in :mod:`ociruntime.init.join`.  The process is built
from ``--process FILE`` or from the bundle's ``config.json`` with the flags on top (runc's
getProcess); it joins every namespace and the cgroup of the container, gets the container's
seccomp filter, and finishes through the same code as the init (:mod:`ociruntime.init.process`).

Every failure is one line and exit status 255 (``exec failed: ...``, as runc); a foreground exec
otherwise exits with the process's status (128+N for a signal).
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import errno
import os

from ociruntime.errors import ConfigError, InitError, OCIError, StateError, describe_oserror, suppress
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.wait import SignalForwarder, status_text
from ociruntime.linux import prctl
from ociruntime.linux.ns import CLONE_NEWUSER, JOIN_ORDER, NAMESPACES
from ociruntime.log import LOG
from ociruntime.plan import ExecPlan, process_plan
from ociruntime.record import dataclass, field, replace
from ociruntime.state.proc import is_alive, pidfd_for
from ociruntime.state.store import ContainerDir, Record, Store
from ociruntime.sync import Channel, ChannelClosed, ChannelTimeout
from ociruntime.waits import wait_timeout

ID_MAX = 2**32 - 2  # 2**32-1 means "unchanged" to setresuid; larger would wrap to root



class ExecError(OCIError):
    """Any exec failure: runc prints ``exec failed: ...`` and exits 255."""

    exit_code = 255

    def __init__(self, msg: str) -> None:
        super().__init__(f"exec failed: {msg}")


@dataclass(frozen=True)
class ExecOptions:
    args: tuple[str, ...] = ()
    process: str | None = None
    detach: bool = False
    pid_file: str | None = None
    console_socket: str | None = None
    tty: bool = False
    cwd: str | None = None
    env: tuple[str, ...] = ()
    user: str | None = None
    additional_gids: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()
    no_new_privs: bool | None = None  # None: as the container's process says
    preserve_fds: int = 0
    apparmor: str | None = None
    process_label: str | None = None
    ignore_paused: bool = False
    cgroup: tuple[str, ...] = field(default_factory=tuple)


def parse_id(text: str, what: str) -> int:
    """A uid/gid from the command line: a decimal in 0..2**32-2, never wrapped (runc wraps
    4294967296 to 0, i.e. root).  ASCII digits only, like Go's Atoi (Python's int() would also
    take "1_000", " 7" and other scripts' digits)."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ConfigError(f'bad {what}: parsing "{text}": invalid syntax')
    value = int(text, 10)
    if not 0 <= value <= ID_MAX:
        raise ConfigError(f'bad {what}: parsing "{text}": value out of range')
    return value


def _process_from_flags(rec: Record, opts: ExecOptions) -> dict:
    """runc's getProcess without --process: config.json's process with the flags on top."""
    from ociruntime.spec.loader import read_json_file

    cfg = read_json_file(os.path.join(rec.bundle, "config.json"))
    proc = dict(cfg.get("process") or {}) if isinstance(cfg, dict) else {}
    if not opts.args:
        raise ConfigError("exec args cannot be empty")
    proc["args"] = list(opts.args)
    if opts.cwd:
        proc["cwd"] = opts.cwd
    if opts.apparmor:
        proc["apparmorProfile"] = opts.apparmor
    if opts.process_label:
        proc["selinuxLabel"] = opts.process_label
    if opts.caps:
        caps = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for name in opts.caps:
            for kind in ("bounding", "effective", "permitted"):
                caps.setdefault(kind, []).append(name)
            # runc: ambient only when the spec has inheritable bits to raise it with.
            if caps.get("inheritable") is not None:
                caps.setdefault("ambient", []).append(name)
        proc["capabilities"] = caps
    proc["env"] = [*(proc.get("env") or []), *opts.env]
    proc["terminal"] = opts.tty
    if opts.no_new_privs is not None:
        proc["noNewPrivileges"] = opts.no_new_privs
    user = dict(proc.get("user") or {})
    if opts.user:
        uid, sep, gid = opts.user.partition(":")
        if sep:
            user["gid"] = parse_id(gid, "gid")
        user["uid"] = parse_id(uid, "uid")
    for g in opts.additional_gids:
        user.setdefault("additionalGids", [])
        user["additionalGids"] = [*user["additionalGids"], parse_id(g, "additional gid")]
    proc["user"] = user
    # The same checks as an --process file: schema, then the process rules of config.json.
    from ociruntime.spec import schema, semantic

    schema.validate(proc, "process")
    semantic.check_process_object(proc, lambda m: LOG.warning(f"process: {m}"))
    return proc


def _check_terminal(opts: ExecOptions, terminal: bool) -> None:
    if opts.detach and terminal and not opts.console_socket:
        raise ConfigError("cannot allocate tty if runc will detach without setting console socket")
    if (not opts.detach or not terminal) and opts.console_socket:
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")


def _sub_cgroups(args: tuple[str, ...]) -> dict[str, str]:
    """runc's getSubCgroupPaths: ``SUB`` alone, or ``CTRL[,CTRL...]:SUB`` any number of times."""
    paths: dict[str, str] = {}
    for arg in args:
        ctrls, sep, sub = arg.partition(":")
        if sep:
            for c in ctrls.split(","):
                if not c:
                    raise ConfigError(f"invalid --cgroup argument: {arg} (empty <controller> prefix)")
                if c in paths:
                    raise ConfigError(f"invalid --cgroup argument(s): controller {c} "
                                      "specified multiple times")
                paths[c] = sub
        else:
            if len(args) != 1:
                raise ConfigError(f"invalid --cgroup argument: {arg} (missing <controller>: prefix)")
            paths[""] = arg
    for sub in paths.values():
        parts = [p for p in sub.split("/") if p]
        if not parts or ".." in parts:
            raise ConfigError(f"invalid --cgroup argument: {sub!r} is not a sub-cgroup of the container's")
    return paths


def _cgroup_dirs(cgroup: dict, subs: dict[str, str]) -> tuple[str, ...]:
    """The directory to join in every hierarchy: the container's, or its --cgroup sub-cgroup."""
    from ociruntime.cgroups.base import UNIFIED

    paths: dict[str, str] = dict(cgroup.get("paths") or {})
    known = {c for name in paths for c in name.split(",")}
    for ctrl in subs:
        if ctrl and cgroup.get("mode") != "v2" and ctrl not in known:
            raise ConfigError(f"invalid --cgroup argument: unknown controller {ctrl!r}")
    out: list[str] = []
    for name, d in sorted(paths.items(), key=lambda kv: (kv[0] == UNIFIED, kv[0])):
        # v1 controllers co-mounted as "cpu,cpuacct" answer to either name.
        names = set(name.split(",")) if name != UNIFIED else {""}
        sub = next((subs[n] for n in names if n in subs), subs.get(""))
        if sub is None and name == UNIFIED and cgroup.get("mode") == "v2" and subs:
            # Pure v2 has one hierarchy: a CTRL:SUB form still names a sub-cgroup of it.
            sub = next(iter(subs.values()))
        target = os.path.join(d, sub.strip("/")) if sub else d
        if sub and not os.path.isdir(target):
            # runc joins existing sub-cgroups only; say so before anything is forked.
            raise ConfigError(f"invalid --cgroup argument: {target}: no such file or directory")
        if target not in out:
            out.append(target)
    return tuple(out)


def _join_cgroups(dirs: tuple[str, ...], pid: int, init_pid: int, mounts: dict[str, str],
                  sub_cgroup: bool) -> None:
    from ociruntime.cgroups import files

    for d in dirs:
        try:
            files.write(d, "cgroup.procs", str(pid))
        except OCIError as e:
            # cgroup v2 with controllers enabled below the container's cgroup ("no internal
            # processes"): join the init's own cgroup instead, as runc does when no --cgroup
            # sub-cgroup was asked for.
            alt = None
            if getattr(e, "errno", 0) == errno.EBUSY and not sub_cgroup:
                alt = _init_unified_cgroup(init_pid, mounts.get("unified") or mounts.get(""))
            if alt is None:
                raise
            files.write(alt, "cgroup.procs", str(pid))


def _init_unified_cgroup(pid: int, mount: str | None) -> str | None:
    from ociruntime.cgroups.base import UNIFIED
    from ociruntime.cgroups.layout import parse_proc_cgroup

    if not mount:
        return None
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as f:
            path = parse_proc_cgroup(f.read()).get(UNIFIED)
    except OSError:
        return None
    return None if path is None else os.path.join(mount, path.lstrip("/"))


def _seccomp(cdir: ContainerDir, cache_dir: str) -> object | None:
    """The container's own filter, recorded at create (never re-read from the bundle)."""
    from ociruntime.spec.loader import read_json_file

    path = os.path.join(cdir.path, "seccomp.json")
    if not os.path.exists(path):
        return None
    profile = read_json_file(path, "seccomp.json")
    from ociruntime.seccomp.compile import compile_profile

    return compile_profile(profile, LOG.warning, cache_dir=cache_dir)  # type: ignore[arg-type]


class _Target:
    """Handles on the verified init, opened before fork; closed by :meth:`close`."""

    def __init__(self, rec: Record) -> None:
        from ociruntime.init.join import JoinTarget

        pidfd = pidfd_for(rec.pid, rec.pid_start)
        if pidfd is None:
            raise StateError("cannot exec in a stopped container")
        fds: list[int] = [pidfd]
        try:
            flags = 0
            ns_fds: list[tuple[int, int]] = []
            for nstype in JOIN_ORDER:
                flag, name = NAMESPACES[nstype]
                try:
                    theirs = os.stat(f"/proc/{rec.pid}/ns/{name}")
                    ours = os.stat(f"/proc/self/ns/{name}")
                except FileNotFoundError:
                    continue  # a namespace type this kernel lacks
                if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                    continue  # shared with us (the spec: an unlisted namespace is inherited)
                fd = os.open(f"/proc/{rec.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                fds.append(fd)
                ns_fds.append((flag, fd))
                flags |= flag
            root_fd = os.open(f"/proc/{rec.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.append(root_fd)
            # Everything above went through /proc/<pid>: check the pid still is our init.
            if not is_alive(rec.pid, rec.pid_start):
                raise StateError("cannot exec in a stopped container")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self.fds = fds
        self.join = JoinTarget(pidfd, flags, ns_fds, root_fd)
        self.userns = bool(flags & CLONE_NEWUSER)

    def close(self) -> None:
        for fd in self.fds:
            with suppress(OSError):
                os.close(fd)
        self.fds = []


def exec_process(ctx: Context, container_id: str, opts: ExecOptions) -> int:
    try:
        return _exec(ctx, container_id, opts)
    except ExecError:
        raise
    except OCIError as e:
        raise ExecError(e.msg) from None
    except OSError as e:
        raise ExecError(describe_oserror(e)) from None


def _exec(ctx: Context, container_id: str, opts: ExecOptions) -> int:
    if opts.preserve_fds < 0:
        raise ConfigError("--preserve-fds must not be negative")
    store = Store(ctx.root)
    with store.open(container_id) as cdir:
        rec = cdir.load()
        status = cdir.status(rec)
        if status == "stopped":
            raise StateError("cannot exec in a stopped container")
        if status == "paused" and not opts.ignore_paused:
            raise StateError("cannot exec in a paused container (use --ignore-paused to override)")
        if opts.process:
            from ociruntime.spec.loader import load_process

            proc = load_process(opts.process, LOG.warning)
        else:
            proc = _process_from_flags(rec, opts)
        if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
            raise ConfigError("apparmor and selinux labels are not supported by this runtime")
        _check_terminal(opts, bool(proc.get("terminal")))
        subs = _sub_cgroups(opts.cgroup)
        pplan = process_plan(proc, LOG.warning, LOG.debug)
        if _setgroups_denied(rec.pid):
            # A rootless container that maps only its owner's gid (lifecycle/create.py).
            if pplan.additional_gids:
                raise ConfigError("cannot set additional gids: setgroups is denied in the container's "
                                  "user namespace (rootless, one gid mapped)")
            pplan = replace(pplan, set_groups=False)
        plan = ExecPlan(
            container_id=container_id, init_pid=rec.pid,
            process=pplan, seccomp=_seccomp(cdir, ctx.seccomp_cache),
            cgroup_dirs=_cgroup_dirs(rec.cgroup, subs) if rec.cgroup else (),
            preserve_fds=opts.preserve_fds, new_keyring=True, state=rec.oci_state(status),
            clear_onlcr=bool(proc.get("terminal")) and not opts.detach, sub_cgroup=bool(subs))
        target = _Target(rec)
    try:
        return _spawn(plan, opts, target, rec)
    finally:
        target.close()


def _setgroups_denied(pid: int) -> bool:
    """Whether setgroups(2) is denied in the user namespace of ``pid`` (read from the host's
    /proc; the namespace's setting never changes back, and the joiner is verified later)."""
    try:
        fd = os.open(f"/proc/{pid}/setgroups", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.read(fd, 16).strip() == b"deny"
    finally:
        os.close(fd)


def _spawn(plan: ExecPlan, opts: ExecOptions, target: _Target, rec: Record) -> int:
    from ociruntime.init import join

    proxy = None
    console_path = opts.console_socket
    if plan.process.terminal and not opts.detach:
        # Foreground with a terminal: we are the console client (runc does the same), whether
        # or not our own stdin is a terminal.
        import tempfile

        from ociruntime.lifecycle.console_proxy import ConsoleProxy

        proxy = ConsoleProxy(tempfile.mkdtemp(prefix="ociruntime-console-"))
        console_path = proxy.path
    console_fd = -1
    parent, child = Channel.pair()
    pids: list[int] = []
    forward = SignalForwarder(skip_winch=proxy is not None)
    try:
        if console_path:
            from ociruntime.linux.tty import connect_unix

            try:
                console_fd = connect_unix(console_path)
            except OSError as e:
                raise OCIError(f"connect to console socket {console_path}: {describe_oserror(e)}") from None
        if not opts.detach:
            # Before fork: a signal that arrives while the process starts is kept and passed on
            # once its pid is known, never lost and never fatal to us.
            forward.install()
        # Subreaper: when the joiner exits, the process is reparented to us, so a foreground
        # exec can wait for it; a detached one leaves it to our caller (shim/conmon).
        prctl.set_child_subreaper(True)
        joiner = os.fork()
        if joiner == 0:
            # Our forwarding handlers are not the children's: a signal before execve acts as
            # it would on the process (and is reset with the rest before execve).
            forward.restore()
            parent.close()
            join.joiner(plan, child, target.join, console_fd)  # never returns
        pids.append(joiner)
        child.close()
        if console_fd >= 0:
            os.close(console_fd)
            console_fd = -1
        target.close()
        parent.set_deadline(wait_timeout())
        pid = _drive(plan, parent, joiner, pids, rec)
        if opts.detach:
            if opts.pid_file:
                from ociruntime.state.pidfile import write_pid_file

                write_pid_file(opts.pid_file, pid)
            return 0
        if proxy is not None:
            proxy.receive()
        forward.target(pid)
        return _foreground(pid, proxy, opts.pid_file)
    except BaseException:
        for p in pids:
            with suppress(OSError):
                os.kill(p, _signal.SIGKILL)
        _reap(pids)
        raise
    finally:
        forward.restore()
        parent.close()
        if console_fd >= 0:
            os.close(console_fd)
        if proxy is not None:
            proxy.close()
            with suppress(OSError):
                os.rmdir(os.path.dirname(proxy.path))


def _reap(pids: list[int], seconds: float = 2.0) -> None:
    """Reap killed children, but never wait long: one frozen with a paused container dies only
    once it is thawed (then our caller, or init, reaps it)."""
    import time

    deadline = time.monotonic() + seconds
    left = list(pids)
    while left and time.monotonic() < deadline:
        for p in list(left):
            try:
                got, _ = os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                got = p
            if got == p:
                left.remove(p)
        if left:
            time.sleep(0.01)


def _drive(plan: ExecPlan, chan: Channel, joiner: int, pids: list[int], rec: Record) -> int:
    """The parent's half of the protocol; returns the process's pid once it has exec'd.

    EOF on the channel means every copy of the child end is closed: the process closes its
    copy by execve (close-on-exec).  A failure before that always sends an error first.
    """
    step = "join cgroup"
    try:
        if plan.cgroup_dirs:
            _join_cgroups(plan.cgroup_dirs, joiner, plan.init_pid, rec.cgroup.get("mounts") or {},
                          plan.sub_cgroup)
        step = "join container"
        chan.send("go")
        msg, _ = chan.expect("pid")
        pid = int(msg["pid"])
        pids.append(pid)
        _, status = os.waitpid(joiner, 0)
        pids.remove(joiner)
        if status != 0:
            raise InitError(f"joining the container failed ({status_text(status)})")
        chan.send("go")
        while True:
            msg, passed = chan.expect("seccomp-listener")
            step = "send seccomp listener"
            from ociruntime.seccomp.notify import send_listener

            try:
                send_listener(passed[0], plan.seccomp.listener_path, plan.state,  # type: ignore[union-attr]
                              plan.seccomp.listener_metadata)  # type: ignore[union-attr]
            finally:
                for fd in passed:
                    os.close(fd)
    except ChannelTimeout:
        raise InitError(f"timed out after {wait_timeout():g}s waiting for the process to start") from None
    except ChannelClosed:
        if not pids or pids[-1] == joiner:
            raise InitError("joining the container failed") from None
        return pids[-1]
    except OSError as e:
        raise OCIError(f"{step}: {describe_oserror(e)}") from None


def _foreground(pid: int, proxy: object | None, pid_file: str | None) -> int:
    """Copy the terminal if we own it, and exit with the process's status."""
    from ociruntime.lifecycle.wait import exit_code, wait_child

    if pid_file:
        from ociruntime.state.pidfile import write_pid_file

        write_pid_file(pid_file, pid)
    if proxy is not None:
        proxy.pump()  # type: ignore[attr-defined]
    return exit_code(wait_child(pid, "exec process"))
