"""``restore``: a new container from CRIU images (runc's ``restore``).

Like create, restore makes the state directory, the cgroup (with the bundle's resources) and the
record ``state``/``kill``/``exec``/``delete`` work from; CRIU rebuilds the processes, their
namespaces and their mounts from the images (the rootfs is CRIU's ``root``), as it does under
runc.  The steps::

    ociruntime restore                 state dir, intent, cgroup + resources, network namespace
      └─ child (becomes criu swrk)     joined to the cgroup by the parent; a private mount
         │                             namespace with the rootfs bound at <state>/criu-root
         │                             (read-only if root.readonly); opens the image and work
         │                             dirs there, makes the RPC socketpair, sends the parent
         │                             its end; exec criu swrk 3
         │   parent ⇄ criu (criu_rpc)  RESTORE request (rst_sibling); notifications:
         │                             setup-namespaces -> prestart + createRuntime hooks,
         │                             orphan-pts-master -> the pty master to --console-socket,
         │                             post-restore -> the pid undo must kill; answer: the pid
         └─ restored init              criu's sibling: our child, like create's init; criu exits
                                       when we close the connection

The criu-root bind lives only in the criu process's mount namespace, so neither success nor a
failure leaves a mount behind.  Any failure undoes everything (processes, cgroup, state dir).
With ``--detach`` restore returns once the container runs; otherwise it waits for the init,
forwards signals, deletes the container and exits with its status (runc).
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os
import socket

from ociruntime import criu, criu_rpc, jsonio
from ociruntime.cgroups import new_manager
from ociruntime.cgroups.layout import container_view
from ociruntime.errors import ConfigError, OCIError, describe_oserror, suppress
from ociruntime.hooks import run_hooks
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.create import _hook_json, _now_rfc3339, _Spawn
from ociruntime.linux import mount as m
from ociruntime.linux import ns, prctl
from ociruntime.linux.tty import connect_unix, send_fd
from ociruntime.log import LOG
from ociruntime.plan import InitPlan, build
from ociruntime.record import dataclass
from ociruntime.spec.loader import load_config
from ociruntime.state.pidfile import write_pid_file
from ociruntime.state.proc import exe_identity, start_time
from ociruntime.state.store import Record, Store

# Namespaces CRIU is told to join by path (runc: every joined one but net, pid and cgroup).
_JOINABLE = {"ipc": "ipc", "uts": "uts"}
_UNRUN_HOOKS = ("createContainer", "startContainer", "poststart")


@dataclass(frozen=True)
class RestoreOptions:
    bundle: str
    pid_file: str | None = None
    console_socket: str | None = None
    detach: bool = False


def _check_plan(plan: InitPlan, config: dict, opts: RestoreOptions) -> None:
    """What restore refuses, each in one line, before anything is made."""
    terminal = bool(config["process"].get("terminal"))
    if terminal and not opts.console_socket:
        # CRIU hands the new pty master over (orphan-pts-master); only a console socket takes it.
        raise ConfigError("restore: a container with a terminal needs --console-socket")
    if opts.console_socket and not terminal:
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")
    if not plan.new_mntns or not plan.new_pidns:
        raise ConfigError("restore: the container needs its own mount and pid namespaces")
    if plan.new_userns:
        raise ConfigError("restore: containers with a user namespace are not supported")
    for kind, path in plan.join:
        if kind != "network" and kind not in _JOINABLE:
            raise ConfigError(f"restore: joining the {kind} namespace ({path}) is not supported")


def _fresh_netns() -> int:
    """An fd of a new network namespace with ``lo`` up (what create gives a container)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            ns.unshare(ns.CLONE_NEWNET)
            ns.loopback_up()
            os.write(w, b"1")
            code = 0
            _signal.pause()  # held until the parent has opened the namespace
        finally:
            os._exit(code)
    os.close(w)
    try:
        ok = os.read(r, 1)
        if not ok:
            raise OCIError("restore: could not make a network namespace")
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        with suppress(OSError):
            os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)


def _netns_fd(plan: InitPlan) -> int:
    """The network namespace the restored container gets: the configured path, or a new one;
    -1 when the container shares ours (no network namespace: nothing was declared at dump)."""
    for kind, path in plan.join:
        if kind == "network":
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise OCIError(f"restore: network namespace {path}: {describe_oserror(e)}") from None
    return _fresh_netns() if plan.new_netns else -1


def _criu_child(binary: str, rootfs: str, croot: str, readonly: bool, netfd: int, dirs: tuple[str, str],
                ctl: socket.socket) -> None:
    """In the forked child: wait until the parent put us in the cgroup, make a private mount
    namespace with the rootfs at ``croot``, then become ``criu swrk``.  Never returns.

    CRIU reaches the image and work directories as /proc/<peer>/fd/N of the process that made
    its socketpair, and mounts its cgroup yard in the work directory: fds opened by the parent
    belong to the parent's mount namespace, where a mount from here fails (EINVAL).  So this
    child opens them after unshare and makes the socketpair itself (the peer is then criu, this
    very process after exec), and hands the parent its end over ``ctl``.
    """
    try:
        if ctl.recv(1) != b"g":
            os._exit(1)
        ns.unshare(ns.CLONE_NEWNS)
        m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
        m.mount(rootfs, croot, None, m.MS_BIND | m.MS_REC)
        if readonly:
            m.mount(None, croot, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY)
        opened = [os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for d in dirs]
        parent_end, criu_end = criu_rpc.socketpair()
        socket.send_fds(ctl, [b"s"], [parent_end.fileno()])
        # criu's fd table: 0-2 the container's stdio (ours), then these.
        fds = {criu_rpc.SWRK_FD: criu_end.fileno(), criu.IMAGES_FD: opened[0], criu.WORK_FD: opened[1]}
        if netfd >= 0:
            fds[criu.NET_FD] = netfd
        criu_rpc.place_fds(fds)
        os.execv(binary, [binary, "swrk", str(criu_rpc.SWRK_FD)])
    except OSError as e:
        with suppress(OSError):
            ctl.send(b"e" + describe_oserror(e).encode())
    finally:
        os._exit(127)


def restore(ctx: Context, container_id: str, copts: criu.CriuOptions, opts: RestoreOptions) -> int:
    criu.validate(copts)
    if copts.pre_dump or copts.leave_running or copts.parent_path:
        raise ConfigError("restore: --pre-dump, --leave-running and --parent-path are checkpoint options")
    binary = criu.resolve(ctx.criu)
    images = os.path.abspath(copts.image_path or "checkpoint")
    if not os.path.isdir(images):
        raise OCIError(f"restore: image directory {images}: no such directory")
    descriptors = criu.load_descriptors(images)
    bundle = os.path.abspath(opts.bundle or ".")
    config = load_config(bundle, warn=LOG.warning)
    linux = config.get("linux") or {}
    store = Store(ctx.root)
    cdir = store.create(container_id)
    spawn: _Spawn | None = None
    try:
        manager = new_manager(linux.get("cgroupsPath"), container_id, systemd=ctx.systemd_cgroup)
        cgroup_dirs, cgroup_data = container_view(manager.paths, manager.mounts)
        plan = build(config, container_id=container_id, bundle=bundle, state_dir=cdir.path,
                     no_pivot=False, no_new_keyring=False, preserve_fds=0, cgroup_paths=cgroup_dirs,
                     cgroup_layout=manager.mode, cgroup_data=cgroup_data,
                     seccomp_cache=ctx.seccomp_cache, warn=LOG.warning, debug=LOG.debug)
        _check_plan(plan, config, opts)
        unrun = [k for k in _UNRUN_HOOKS if plan.hooks.get(k)]
        if unrun:
            # runc runs only prestart and createRuntime (at CRIU's setup-namespaces) on restore.
            LOG.warning(f"restore: {', '.join(unrun)} hooks are not run on restore")
        manager.check_existing(LOG.warning)
        if linux.get("seccomp"):
            cdir.write_file("seccomp.json", jsonio.dumps(linux["seccomp"]).encode())
        spawn = _Spawn(plan, cdir, manager)
        cdir.save_intent(spawn.intent)
        rec = _restore(binary, spawn, config, copts, images, descriptors, opts.console_socket)
        cdir.save(rec)
        if opts.pid_file:
            write_pid_file(opts.pid_file, rec.pid)
    except BaseException:
        if spawn is not None:
            spawn.undo()
        cdir.remove()
        raise
    finally:
        cdir.close()
        prctl.set_child_subreaper(False)
    if opts.detach:
        return 0
    return _foreground(ctx, container_id, rec.pid)


def _restore(binary: str, spawn: _Spawn, config: dict, copts: criu.CriuOptions, images: str,
             descriptors: list[str], console_socket: str | None) -> Record:
    plan, manager, cdir = spawn.plan, spawn.manager, spawn.cdir
    rec = Record(id=plan.container_id, bundle=plan.bundle, rootfs=plan.rootfs.rootfs,
                 created=_now_rfc3339(), owner="root" if os.geteuid() == 0 else str(os.geteuid()),
                 annotations=plan.annotations, cgroup=None, own_pid_ns=plan.new_pidns,
                 kept_mounts=None, pid=0, pid_start=0, started=True, init_exe=None)
    manager.create()
    work = os.path.abspath(copts.work_path) if copts.work_path else images
    try:
        os.makedirs(work, 0o700, exist_ok=True)
    except OSError as e:
        raise OCIError(f"restore: create {work}: {describe_oserror(e)}") from None
    log = os.path.join(work, criu.RESTORE_LOG)
    console_fd = -1
    if console_socket:
        # Before criu runs, so a wrong path fails with nothing restored (create does the same).
        try:
            console_fd = connect_unix(console_socket)
        except OSError as e:
            raise OCIError(f"connect to console socket {console_socket}: {describe_oserror(e)}") from None
    croot = os.path.join(cdir.path, "criu-root")
    os.mkdir(croot, 0o755)
    netfd = _netns_fd(plan)
    inherit = criu.inherit_fds(descriptors)
    if netfd >= 0:
        inherit.append((criu.NET_FD, criu.NET_KEY))
    ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def notified(script: str, pid: int, fds: list[int]) -> None:
        if script == "setup-namespaces":
            # The restored tree's namespaces exist, its processes do not run yet: where runc runs
            # prestart and createRuntime hooks on restore (in the bundle, like create's).
            rec.pid = pid
            state = rec.oci_state("creating")
            for kind in ("prestart", "createRuntime"):
                if plan.hooks.get(kind):
                    run_hooks(kind, plan.hooks[kind], state, cwd=plan.bundle)
        elif script == "post-restore":
            spawn.init = pid  # from here on, undo kills the restored tree
        elif script == "orphan-pts-master":
            if console_fd < 0 or not fds:
                raise OCIError("restore: criu sent a terminal, but there is no --console-socket")
            send_fd(console_fd, b"orphan-pts-master", fds[0])

    # The restored init is criu's sibling (rst_sibling): our child, like create's init; anything
    # else criu leaves behind on failure is reparented to us, so undo can reap it.
    prctl.set_child_subreaper(True)
    child = os.fork()
    if child == 0:
        ctl.close()
        _criu_child(binary, plan.rootfs.rootfs, croot, plan.rootfs.readonly, netfd, (images, work), ctl_child)
    ctl_child.close()
    if netfd >= 0:
        os.close(netfd)
    resp: criu_rpc.Resp | None = None
    failed: BaseException | None = None
    reason = ""
    ours: socket.socket | None = None
    try:
        manager.join(child)
        # After the join, as in create: the systemd driver's scope exists only from then on.
        manager.set_resources((config.get("linux") or {}).get("resources") or {})
        # Only once criu is in the container's cgroup: the restored tasks must start there.
        ctl.send(b"g")
        msg, fds, _, _ = socket.recv_fds(ctl, 4096, 1)
        if fds:
            ours = socket.socket(fileno=fds[0])
        if msg != b"s" or ours is None:
            reason = msg[1:].decode(errors="replace") if msg.startswith(b"e") else "criu did not start"
        else:
            with open(f"/proc/{child}/cgroup") as f:
                roots = criu.cgroup_roots(f.read())
            req = criu.restore_opts(copts, images_fd=criu.IMAGES_FD, work_fd=criu.WORK_FD, root=croot,
                                    mounts=criu.restore_mounts(plan.rootfs), inherit=inherit,
                                    cgroup_roots=roots,
                                    join_ns=[(_JOINABLE[k], p) for k, p in plan.join if k in _JOINABLE])
            LOG.debug(f"restore: criu swrk {req}")
            try:
                resp = criu_rpc.call(ours, criu_rpc.RESTORE, req, notified)
            except (OSError, criu_rpc.RpcError) as e:
                failed = e
    finally:
        ctl.close()  # without "g" the child exits at once
        if ours is not None:
            ours.close()  # criu swrk exits once its connection is gone
        if console_fd >= 0:
            os.close(console_fd)
        with suppress(ChildProcessError):
            os.waitpid(child, 0)
    if reason:
        raise OCIError(f"restore: prepare criu: {reason}")
    if resp is None or not resp.success:
        raise criu.failure("restore", log, str(failed) if resp is None else resp.cr_errmsg)
    pid = resp.pid
    spawn.init = pid
    if pid <= 0:
        raise OCIError(f"restore: criu reported no pid (log: {log})")
    with suppress(OSError):
        os.rmdir(croot)
    rec.pid, rec.pid_start, rec.init_exe = pid, start_time(pid) or 0, exe_identity(pid)
    rec.cgroup = manager.to_state()
    rec.hooks = {k: [_hook_json(h) for h in v] for k, v in plan.hooks.items()
                 if k in ("poststart", "poststop") and v}
    spawn.intent.pid, spawn.intent.pid_start = rec.pid, rec.pid_start
    cdir.save_intent(spawn.intent)
    return rec


def _foreground(ctx: Context, container_id: str, pid: int) -> int:
    """runc without --detach: wait for the restored init, then delete the container."""
    from ociruntime.lifecycle.delete import destroy
    from ociruntime.lifecycle.wait import SignalForwarder, exit_code, wait_child

    forward = SignalForwarder(skip_winch=False)
    forward.install()
    forward.target(pid)
    try:
        status = wait_child(pid)
    finally:
        forward.restore()
    with suppress(OCIError), Store(ctx.root).open(container_id) as cdir:
        destroy(cdir, cdir.load())
    return exit_code(status)
