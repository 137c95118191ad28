"""``create``: validate the bundle, fork the container init, and return once it is ready.

The parent side of the protocol drawn in :mod:`ociruntime.sync`.  On any failure everything made
so far is undone in reverse order — processes, cgroup, state directory — so a failed create
leaves nothing behind.
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os
import time

from ociruntime import jsonio, record, rootless
from ociruntime.cgroups import Manager, new_manager
from ociruntime.cgroups.layout import container_view
from ociruntime.errors import ConfigError, InitError, OCIError, describe_oserror, suppress
from ociruntime.hooks import run_hooks
from ociruntime.init import stage1
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.wait import status_text
from ociruntime.linux import prctl
from ociruntime.linux.ns import write_proc_file
from ociruntime.linux.tty import connect_unix
from ociruntime.log import LOG
from ociruntime.plan import InitPlan, build
from ociruntime.record import dataclass
from ociruntime.rootfs.cleanup import mount_ids_beneath, unmount_beneath
from ociruntime.spec.loader import load_config
from ociruntime.state.pidfile import write_pid_file
from ociruntime.state.proc import exe_identity, start_time
from ociruntime.state.store import ContainerDir, Intent, Record, Store
from ociruntime.sync import Channel, ChannelClosed, ChannelTimeout
from ociruntime.waits import wait_timeout


@dataclass(frozen=True)
class CreateOptions:
    bundle: str
    pid_file: str | None = None
    console_socket: str | None = None
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    listen_fds: int = 0
    # `run` in the foreground keeps being the init's parent (subreaper) after create returns.
    keep_subreaper: bool = False
    # `run` in the foreground as its own console client.
    console_proxy: bool = False


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class _Spawn:
    """The processes and resources of one create, and how to undo them."""

    def __init__(self, plan: InitPlan, cdir: ContainerDir, manager: Manager, *,
                 rootless_cgroups: bool = False, maps: rootless.MapPlan | None = None) -> None:
        self.plan = plan
        self.cdir = cdir
        self.manager = manager
        # cgroups/rootless.py: device rules are not expected to work (runc ignores their errors).
        self.rootless_cgroups = rootless_cgroups
        # How an unprivileged caller's maps get written (None: we are root, write them directly).
        self.maps = maps
        self.stage1 = 0
        self.init = 0
        # Without a mount namespace the init mounts into ours: what is beneath the rootfs already
        # is not the container's and is never unmounted (rootfs/cleanup.py).
        self.kept_mounts = None if plan.rootfs.mntns else mount_ids_beneath(plan.rootfs.rootfs)
        # What we are about to make outside the state directory, on disk before we make it: if
        # we are killed, `delete --force` undoes it from this record (lifecycle/delete.py).
        self.intent = Intent(cgroup=manager.to_intent(), rootfs=plan.rootfs.rootfs,
                             kept_mounts=self.kept_mounts)

    def _reap_stage1(self) -> int:
        if not self.stage1:
            return 0
        _, status = os.waitpid(self.stage1, 0)
        self.stage1 = 0
        return status

    def undo(self) -> None:
        """Kill whatever we started and remove the cgroup; best effort, never raises."""
        with suppress(OSError):
            if self.stage1:
                os.kill(self.stage1, _signal.SIGKILL)
                self._reap_stage1()
        pids = set()
        with suppress(OSError, OCIError):
            pids.update(self.manager.pids())
        if self.init:
            pids.add(self.init)
        for pid in pids:
            with suppress(OSError):
                os.kill(pid, _signal.SIGKILL)
        # The init (and stage 1's other leftovers) were reparented to us: reap them so no zombie
        # holds the cgroup busy, then remove it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)
        if self.kept_mounts is not None:
            with suppress(OSError, OCIError):
                unmount_beneath(self.plan.rootfs.rootfs, self.kept_mounts)
        with suppress(OSError, OCIError):
            self.manager.destroy()


def create(ctx: Context, container_id: str, opts: CreateOptions) -> Record:
    bundle = os.path.abspath(opts.bundle or ".")
    config = load_config(bundle, warn=LOG.warning)
    proc = config["process"]
    if proc.get("terminal") and not opts.console_socket:
        raise ConfigError("cannot allocate tty if runc will detach without setting console socket")
    if opts.console_socket and not proc.get("terminal"):
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")
    if opts.preserve_fds < 0:
        raise ConfigError("--preserve-fds must not be negative")
    if opts.listen_fds:
        # Socket activation: the fds come first (from 3), then --preserve-fds (runc's order).
        proc["env"] = [*proc.get("env", []), f"LISTEN_FDS={opts.listen_fds}", "LISTEN_PID=1"]
    linux = config.get("linux") or {}
    # Before anything exists: a config an unprivileged caller cannot run fails here.
    rootless_cgroups, maps, in_userns = _rootless(ctx, config)
    store = Store(ctx.root)
    cdir = store.create(container_id)
    spawn: _Spawn | None = None
    try:
        # Rootless with the systemd driver: a scope of the user's own manager (a delegated
        # subtree, so nothing to prune); with cgroupfs: only what we may write (runc's rules).
        manager = new_manager(linux.get("cgroupsPath"), container_id, systemd=ctx.systemd_cgroup,
                              rootless=rootless_cgroups)
        view_paths, view_mounts = manager.paths, manager.mounts
        if rootless_cgroups and not ctx.systemd_cgroup:
            from ociruntime.cgroups.rootless import own_dirs, prune

            dropped = prune(manager, linux.get("resources"), bool(linux.get("cgroupsPath")))
            if dropped:
                LOG.debug(f"rootless: no cgroup in {', '.join(sorted(dropped))} (not writable)")
            # The container's /sys/fs/cgroup shows, read-only, the cgroups it stays in.
            own = own_dirs(dropped)
            view_paths = {**manager.paths, **own}
            view_mounts = {**manager.mounts, **{name: dropped[name] for name in own}}
        cgroup_dirs, cgroup_data = container_view(view_paths, view_mounts)
        plan = build(config, container_id=container_id, bundle=bundle, state_dir=cdir.path,
                     no_pivot=opts.no_pivot, no_new_keyring=opts.no_new_keyring,
                     preserve_fds=opts.preserve_fds + opts.listen_fds, cgroup_paths=cgroup_dirs,
                     cgroup_layout=manager.mode, cgroup_data=cgroup_data,
                     seccomp_cache=ctx.seccomp_cache,
                     warn=LOG.warning, debug=LOG.debug, clear_onlcr=opts.console_proxy)
        if maps is not None and maps.deny_setgroups:
            plan = record.replace(plan, process=record.replace(plan.process, set_groups=False))
        if in_userns and not plan.rootfs.userns:
            # We run in a user namespace (rootless podman's) and the container stays in it: mknod
            # is refused there too, so devices are bind-mounted (runc's rule).
            plan = record.replace(plan, rootfs=record.replace(plan.rootfs, userns=True))
        manager.check_existing(LOG.warning)
        if linux.get("seccomp"):
            # exec gives its processes the container's filter: the one validated now, not
            # whatever the bundle holds later.
            cdir.write_file("seccomp.json", jsonio.dumps(linux["seccomp"]).encode())
        os.mkfifo(cdir.fifo_path, 0o622)
        os.chmod(cdir.fifo_path, 0o622)  # mkfifo honours the umask; the init may be non-root
        spawn = _Spawn(plan, cdir, manager, rootless_cgroups=rootless_cgroups, maps=maps)
        cdir.save_intent(spawn.intent)
        rec = _spawn(ctx, spawn, config, opts)
        cdir.save(rec)
        if opts.pid_file:
            write_pid_file(opts.pid_file, rec.pid)
        return rec
    except BaseException:
        # Before the spawn exists nothing was made but the state directory.
        if spawn is not None:
            spawn.undo()
        cdir.remove()
        raise
    finally:
        cdir.close()


def _spawn(ctx: Context, spawn: _Spawn, config: dict, opts: CreateOptions) -> Record:
    plan = spawn.plan
    manager = spawn.manager
    manager.create()
    console_fd = -1
    if opts.console_socket:
        try:
            console_fd = connect_unix(opts.console_socket)
        except OSError as e:
            raise OCIError(f"connect to console socket {opts.console_socket}: "
                           f"{describe_oserror(e)}") from None
    fifo_fd = os.open(spawn.cdir.fifo_path, os.O_PATH | os.O_CLOEXEC)
    # The init reports a failure after `start` (when we are gone) to this --log file too.
    log_fd = LOG.open_for_child()
    parent, child = Channel.pair()
    # As a subreaper, orphans (the init, once stage 1 exits) are reparented to us, so on failure
    # we can reap them; once we exit they move on to the engine that called us.
    prctl.set_child_subreaper(True)
    try:
        pid = os.fork()
        if pid == 0:
            parent.close()
            # The state directory's lock must not outlive create in the init.
            os.close(spawn.cdir.fd)
            stage1.run(plan, child, fifo_fd, console_fd, log_fd)  # never returns
        spawn.stage1 = pid
        child.close()
        os.close(fifo_fd)
        if log_fd >= 0:
            os.close(log_fd)
        if console_fd >= 0:
            os.close(console_fd)
        parent.set_deadline(wait_timeout())
        rec = _drive(ctx, spawn, parent, config)
    finally:
        parent.close()
        if not opts.keep_subreaper:
            prctl.set_child_subreaper(False)
    return rec


def _drive(ctx: Context, spawn: _Spawn, chan: Channel, config: dict) -> Record:
    """Run the parent's half of the protocol until the init reports ready."""
    plan, manager = spawn.plan, spawn.manager
    rec = Record(id=plan.container_id, bundle=plan.bundle, rootfs=plan.rootfs.rootfs,
                 created=_now_rfc3339(), owner="root" if os.geteuid() == 0 else str(os.geteuid()),
                 annotations=plan.annotations, cgroup=manager.to_state(), own_pid_ns=plan.new_pidns,
                 kept_mounts=spawn.kept_mounts)
    rec.hooks = {k: [_hook_json(h) for h in v] for k, v in plan.hooks.items()
                 if k in ("poststart", "poststop") and v}
    step = "join cgroup"
    try:
        manager.join(spawn.stage1)
        # The systemd driver makes its directories only now (a scope needs a pid): record them.
        rec.cgroup = manager.to_state()
        # Always, even without linux.resources: the device rules start from runc's default
        # allow-list, never from "everything allowed".
        step = "set cgroup resources"
        resources = (config.get("linux") or {}).get("resources") or {}
        if spawn.rootless_cgroups:
            manager.set_resources(resources, skip_devices=True)
            _try_device_rules(manager, resources)
        else:
            manager.set_resources(resources)
        step = "start init"
        chan.send("go")
        # Stage 1's messages first; the init speaks only after "init-go", which we send once we
        # know its pid (the two share the channel, so their order is ours to enforce).
        expected = ["pid", "userns"] if plan.new_userns else ["pid"]
        while True:
            msg, passed = chan.expect(*expected)
            t = msg["type"]
            if t == "userns":
                step = "write id mappings"
                _write_maps(spawn)
                chan.send("mapped")
                expected = ["pid"]
            elif t == "pid":
                spawn.init = int(msg["pid"])
                rec.pid = spawn.init
                rec.pid_start = start_time(spawn.init) or 0
                # Still a fork of ours: its executable changes only when it execs the user process.
                rec.init_exe = exe_identity(spawn.init)
                # Before "init-go": the init mounts nothing until the record names it.
                step = "record init pid"
                spawn.intent.pid, spawn.intent.pid_start = rec.pid, rec.pid_start
                spawn.cdir.save_intent(spawn.intent)
                step = "start init"
                status = spawn._reap_stage1()
                if status != 0:
                    raise InitError(f"stage 1 failed: {status_text(status)}")
                chan.send("init-go")
                expected = ["hooks", "seccomp-listener", "ready"]
            elif t == "hooks":
                step = "run prestart/createRuntime hooks"
                state = rec.oci_state("creating")
                for kind in ("prestart", "createRuntime"):
                    if plan.hooks.get(kind):
                        # In the bundle: runc's cwd, which `runc create --bundle` chdirs to.
                        run_hooks(kind, plan.hooks[kind], state, cwd=plan.bundle)
                chan.send("hooks-done")
            elif t == "seccomp-listener":
                step = "send seccomp listener"
                from ociruntime.seccomp.notify import send_listener

                try:
                    send_listener(passed[0], plan.seccomp.listener_path,  # type: ignore[union-attr]
                                  rec.oci_state("creating"), plan.seccomp.listener_metadata)  # type: ignore[union-attr]
                finally:
                    for fd in passed:
                        os.close(fd)
            elif t == "ready":
                return rec
    except ChannelTimeout:
        raise InitError(f"timed out after {wait_timeout():g}s waiting for the container init") from None
    except ChannelClosed:
        detail = ""
        if spawn.stage1:
            detail = f" ({status_text(spawn._reap_stage1())})"
        raise InitError(f"container init exited unexpectedly{detail}") from None
    except OSError as e:
        raise OCIError(f"{step}: {describe_oserror(e)}") from None


def _rootless(ctx: Context, config: dict) -> tuple[bool, rootless.MapPlan | None, bool]:
    """(use rootless cgroups, how to write the maps of an unprivileged caller's user namespace,
    whether we run in a user namespace other than the initial one: as root, only checked then)."""
    euid = os.geteuid()
    in_userns = euid == 0 and rootless.in_user_namespace()
    rootless_cgroups = rootless.rootless_cgroups(ctx.rootless, euid, in_userns)
    if euid == 0:
        # Root of the host, or of the user namespace the caller made for us (rootless podman):
        # we hold CAP_SETUID/CAP_SETGID over the new namespace and write any map of our ids.
        return rootless_cgroups, None, in_userns
    rootless.check_config(config, euid, os.getegid())
    linux = config.get("linux") or {}
    if any(ns.get("type") == "user" and ns.get("path") for ns in linux.get("namespaces") or []):
        return rootless_cgroups, None, False  # joined: nothing to map
    import pwd

    try:
        user = pwd.getpwuid(euid).pw_name
    except KeyError:
        user = str(euid)
    maps = rootless.plan_maps(linux, euid, os.getegid(), user, rootless.read_text("/etc/subuid"),
                              rootless.read_text("/etc/subgid"))
    return rootless_cgroups, maps, False


def _write_maps(spawn: _Spawn) -> None:
    """Write stage 1's uid_map and gid_map, from outside its new user namespace."""
    pid, plan, maps = spawn.stage1, spawn.plan, spawn.maps
    if maps is not None and maps.uid_helper:
        _run_map_helper(maps.uid_helper, pid, plan.uid_map)
    else:
        write_proc_file(pid, "uid_map", plan.uid_map)
    if maps is not None and maps.gid_helper:
        _run_map_helper(maps.gid_helper, pid, plan.gid_map)
        return
    if maps is not None and maps.deny_setgroups:
        # An unprivileged writer may map its own gid only with setgroups(2) denied for good in
        # the namespace (user_namespaces(7)); the init then keeps the caller's groups (runc too).
        write_proc_file(pid, "setgroups", b"deny")
    write_proc_file(pid, "gid_map", plan.gid_map)


def _run_map_helper(helper: str, pid: int, maps: bytes) -> None:
    """newuidmap/newgidmap PID ID HOST SIZE...: the setuid helpers check /etc/subuid themselves."""
    import subprocess

    argv = rootless.helper_argv(helper, pid, maps)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=wait_timeout(), check=False,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OCIError(f"{os.path.basename(helper)}: {e}") from None
    if done.returncode != 0:
        out = done.stdout.decode(errors="replace").strip().splitlines()
        detail = out[-1] if out else f"exit status {done.returncode}"
        raise OCIError(f"{' '.join(argv)}: {detail}")


def _try_device_rules(manager: Manager, resources: dict) -> None:
    """Rootless cgroups: device rules where the devices cgroup is ours, errors ignored (runc);
    the host's file permissions on the bound device nodes are what limits the container."""
    try:
        manager.set_resources({"devices": resources.get("devices")})
    except (OSError, OCIError) as e:
        LOG.debug(f"rootless: device cgroup rules not applied: {e}")


def _hook_json(h: object) -> dict:
    return {"path": h.path, "args": list(h.args), "env": list(h.env),  # type: ignore[attr-defined]
            "timeout": h.timeout}  # type: ignore[attr-defined]


