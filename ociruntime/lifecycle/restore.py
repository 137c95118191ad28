"""``restore``: a new container from CRIU images (runc's ``restore``).

Like create, restore makes the state directory, the cgroup (with the bundle's resources) and the
record ``state``/``kill``/``exec``/``delete`` work from; CRIU rebuilds the processes, their
namespaces and their mounts from the images (the rootfs is CRIU's ``--root``), as it does under
runc.  The steps::

    ociruntime restore                 state dir, intent, cgroup + resources, network namespace
      └─ child (becomes criu)          joined to the cgroup by the parent; a private mount
         │                             namespace with the rootfs bound at <state>/criu-root
         │                             (read-only if root.readonly); exec criu restore
         │                             --restore-detached --restore-sibling
         └─ restored init              CLONE_PARENT: our child, like create's init; its pid from
                                       criu's --pidfile; criu exits

The criu-root bind lives only in the criu process's mount namespace, so neither success nor a
failure leaves a mount behind.  Any failure undoes everything (processes, cgroup, state dir).
With ``--detach`` restore returns once the container runs; otherwise it waits for the init,
forwards signals, deletes the container and exits with its status (runc).
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os

from ociruntime import criu, jsonio
from ociruntime.cgroups import new_manager
from ociruntime.cgroups.layout import container_view
from ociruntime.errors import ConfigError, OCIError, describe_oserror, suppress
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.create import _hook_json, _now_rfc3339, _Spawn
from ociruntime.linux import mount as m
from ociruntime.linux import ns, prctl
from ociruntime.log import LOG
from ociruntime.plan import InitPlan, build
from ociruntime.record import dataclass
from ociruntime.spec.loader import load_config
from ociruntime.state.pidfile import write_pid_file
from ociruntime.state.proc import exe_identity, start_time
from ociruntime.state.store import Record, Store

# Namespaces CRIU is told to join by path (runc: every joined one but net, pid and cgroup).
_JOINABLE = {"ipc": "ipc", "uts": "uts"}
_UNRUN_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart")


@dataclass(frozen=True)
class RestoreOptions:
    bundle: str
    pid_file: str | None = None
    console_socket: str | None = None
    detach: bool = False


def _check_plan(plan: InitPlan, config: dict, opts: RestoreOptions) -> None:
    """What restore refuses, each in one line, before anything is made."""
    terminal = bool(config["process"].get("terminal"))
    if terminal:
        raise ConfigError("restore: containers with a terminal are not supported (criu's command "
                          "line cannot hand the pty master to --console-socket)")
    if opts.console_socket:
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


def _criu_child(argv: list[str], rootfs: str, croot: str, readonly: bool, netfd: int, go: int,
                err: int) -> None:
    """In the forked child: wait until the parent put us in the cgroup, make a private mount
    namespace with the rootfs at ``croot``, then become criu.  Never returns."""
    try:
        if os.read(go, 1) != b"g":
            os._exit(1)
        with open("/proc/self/cgroup") as f:
            for ctrl, path in criu.cgroup_roots(f.read()):
                argv += ["--cgroup-root", f"{ctrl}:{path}" if ctrl else path]
        ns.unshare(ns.CLONE_NEWNS)
        m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
        m.mount(rootfs, croot, None, m.MS_BIND | m.MS_REC)
        if readonly:
            m.mount(None, croot, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY)
        if netfd >= 0:
            os.dup2(netfd, criu.NET_FD)  # inheritable
        os.execv(argv[0], argv)
    except OSError as e:
        with suppress(OSError):
            os.write(err, describe_oserror(e).encode())
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
            LOG.warning(f"restore: {', '.join(unrun)} hooks are not run on restore")
        manager.check_existing(LOG.warning)
        if linux.get("seccomp"):
            cdir.write_file("seccomp.json", jsonio.dumps(linux["seccomp"]).encode())
        spawn = _Spawn(plan, cdir, manager)
        cdir.save_intent(spawn.intent)
        rec = _restore(binary, spawn, config, copts, images, descriptors)
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
             descriptors: list[str]) -> Record:
    plan, manager, cdir = spawn.plan, spawn.manager, spawn.cdir
    manager.create()
    work = os.path.abspath(copts.work_path) if copts.work_path else images
    try:
        os.makedirs(work, 0o700, exist_ok=True)
    except OSError as e:
        raise OCIError(f"restore: create {work}: {describe_oserror(e)}") from None
    croot = os.path.join(cdir.path, "criu-root")
    os.mkdir(croot, 0o755)
    pidfile = os.path.join(cdir.path, "criu.pid")
    netfd = _netns_fd(plan)
    inherit = criu.inherit_fds(descriptors)
    if netfd >= 0:
        inherit.append((criu.NET_FD, criu.NET_KEY))
    argv = criu.restore_argv(binary, copts, images=images, work=work, root=croot, pidfile=pidfile,
                             mounts=criu.restore_mounts(plan.rootfs), inherit=inherit,
                             join_ns=[(_JOINABLE[k], p) for k, p in plan.join if k in _JOINABLE])
    LOG.debug(f"restore: {' '.join(argv)}")
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    # The restored init is cloned with CLONE_PARENT (our child); anything else criu leaves
    # behind on failure is reparented to us, so undo can reap it.
    prctl.set_child_subreaper(True)
    child = os.fork()
    if child == 0:
        os.close(go_w)
        os.close(err_r)
        _criu_child(argv, plan.rootfs.rootfs, croot, plan.rootfs.readonly, netfd, go_r, err_w)
    os.close(go_r)
    os.close(err_w)
    if netfd >= 0:
        os.close(netfd)
    try:
        try:
            manager.join(child)
            # After the join, as in create: the systemd driver's scope exists only from then on.
            manager.set_resources((config.get("linux") or {}).get("resources") or {})
            # Only once criu is in the container's cgroup: the restored tasks must start there.
            os.write(go_w, b"g")
        finally:
            os.close(go_w)  # without "g" the child exits at once
        _, status = os.waitpid(child, 0)
        reason = os.read(err_r, 4096).decode(errors="replace")
    except BaseException:
        with suppress(ChildProcessError):
            os.waitpid(child, 0)
        raise
    finally:
        os.close(err_r)
    if reason:
        raise OCIError(f"restore: prepare criu: {reason}")
    pid = 0
    with suppress(OSError, ValueError):
        with open(pidfile) as f:
            pid = int(f.read().strip() or 0)
    spawn.init = pid
    if status != 0:
        raise criu.failure("restore", status, os.path.join(work, criu.RESTORE_LOG))
    if pid <= 0:
        raise OCIError(f"restore: criu reported no pid (log: {os.path.join(work, criu.RESTORE_LOG)})")
    with suppress(OSError):
        os.rmdir(croot)
    rec = Record(id=plan.container_id, bundle=plan.bundle, rootfs=plan.rootfs.rootfs,
                 created=_now_rfc3339(), owner="root" if os.geteuid() == 0 else str(os.geteuid()),
                 annotations=plan.annotations, cgroup=manager.to_state(), own_pid_ns=plan.new_pidns,
                 kept_mounts=None, pid=pid, pid_start=start_time(pid) or 0, started=True,
                 init_exe=exe_identity(pid))
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
