"""``checkpoint``: dump a running container's processes with CRIU (runc's ``checkpoint``).

What is described to CRIU, and why, is in :mod:`ociruntime.criu`.  Like runc, a checkpoint
without ``--leave-running`` (and not a ``--pre-dump``) ends the container: CRIU kills its
processes once the images are written, and the container is then deleted (cgroup, state
directory, poststop hooks), so the id is free for ``restore``.
"""

from __future__ import annotations

import os

from ociruntime import criu, criu_rpc
from ociruntime.errors import OCIError, StateError, describe_oserror
from ociruntime.lifecycle.context import Context
from ociruntime.linux.mountinfo import MountInfo, parse_mountinfo
from ociruntime.log import LOG
from ociruntime.state.store import Record, Store

_STDIO = ("stdin", "stdout", "stderr")
# fd targets that are not files on a mount: CRIU dumps these kinds itself.
_NOT_FILES = ("pipe:", "socket:", "anon_inode:")


def _image_dirs(opts: criu.CriuOptions) -> tuple[str, str]:
    """The image and work directories, made if missing (runc: mode 0700; default ./checkpoint)."""
    images = os.path.abspath(opts.image_path or "checkpoint")
    work = os.path.abspath(opts.work_path) if opts.work_path else images
    for d in dict.fromkeys((images, work)):
        try:
            os.makedirs(d, 0o700, exist_ok=True)
        except OSError as e:
            raise OCIError(f"checkpoint: create {d}: {os.strerror(e.errno or 0).lower()}") from None
    if opts.parent_path:
        parent = os.path.join(images, opts.parent_path)
        if not os.path.isdir(parent):
            raise OCIError(f"invalid --parent-path: {parent}: not a directory")
    return images, work


def _freezer(rec: Record) -> str:
    """The cgroup CRIU freezes the tree with: the v1 freezer, or the cgroup2 dir on pure v2."""
    if not rec.cgroup:
        return ""
    from ociruntime.cgroups import manager_from_state

    mgr = manager_from_state(rec.cgroup)
    if "freezer" in mgr.paths:
        return mgr.paths["freezer"]
    if mgr.mode == "v2":
        return mgr.paths.get("unified", "")
    return ""


def _check_stdio(pid: int, mounts: list[MountInfo]) -> None:
    """Refuse, in one line, stdio CRIU cannot dump: a file on a mount outside the container (a
    host log file).  Pipes, sockets, the container's own files and its terminal (a pty of its
    own devpts, whose master CRIU leaves outside: orphan_pts_master) are fine."""
    ids = {m.mount_id for m in mounts}
    for fd, name in enumerate(_STDIO):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                info = f.read().decode()
        except OSError:
            continue
        if target.startswith(_NOT_FILES):
            continue
        mnt_id = next((int(line.split()[1]) for line in info.splitlines() if line.startswith("mnt_id:")), -1)
        if mnt_id not in ids:
            raise OCIError(f"checkpoint: the container's {name} is {target}, a file outside the "
                           "container, which criu cannot dump: give the container pipes as stdio "
                           "(as podman and containerd do)")


def _own_ns(pid: int, kind: str) -> int:
    """The inode of the init's ``kind`` namespace when it is not ours (0 otherwise)."""
    try:
        ino = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        return ino if ino != os.stat(f"/proc/self/ns/{kind}").st_ino else 0
    except OSError:
        return 0


def checkpoint(ctx: Context, container_id: str, opts: criu.CriuOptions) -> None:
    criu.validate(opts)
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        status = cdir.status(rec)
        if status in ("created", "stopped"):
            raise StateError(f"container cannot be checkpointed in {status} state")
        if not rec.own_pid_ns:
            raise OCIError("checkpoint: a container without its own pid namespace cannot be "
                           "checkpointed")
        if rec.kept_mounts is not None:
            raise OCIError("checkpoint: a container without its own mount namespace cannot be "
                           "checkpointed")
        images, work = _image_dirs(opts)
        pid = rec.pid
        try:
            with open(f"/proc/{pid}/mountinfo", "rb") as f:
                mounts = parse_mountinfo(f.read())
        except OSError as e:
            raise OCIError(f"checkpoint: read the container's mounts: {describe_oserror(e)}") from None
        if not opts.pre_dump:
            _check_stdio(pid, mounts)
            # runc writes what fds 0-2 are before the dump; restore hands its own fds in their place.
            criu.write_descriptors(images, criu.read_descriptors(pid))
        what = "checkpoint" if not opts.pre_dump else "checkpoint (pre-dump)"
        _dump(criu.resolve(ctx.criu), what, pid, opts, images, work, rec, mounts)
        if opts.leave_running or opts.pre_dump:
            return
        # CRIU killed the processes once dumped: the container is over (runc destroys it too).
        from ociruntime.lifecycle.delete import destroy

        destroy(cdir, rec)


def _dump(binary: str, what: str, pid: int, opts: criu.CriuOptions, images: str, work: str,
          rec: Record, mounts: list[MountInfo]) -> None:
    """One dump request to ``criu swrk``; notifications (post-dump, network-lock ...) need
    nothing from us and are just acknowledged."""
    images_fd = os.open(images, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    work_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ours, theirs = criu_rpc.socketpair()
    try:
        req = criu.dump_opts(pid, opts, images_fd=images_fd, work_fd=work_fd, root=rec.rootfs,
                             external_mounts=criu.external_mountpoints(mounts, bool(_own_ns(pid, "cgroup"))),
                             freeze_cgroup=_freezer(rec), net_ino=_own_ns(pid, "net"))
        LOG.debug(f"checkpoint: criu swrk {req}")
        child = _spawn_swrk(binary, theirs.fileno())
        theirs.close()
        try:
            resp = criu_rpc.call(ours, criu_rpc.PRE_DUMP if opts.pre_dump else criu_rpc.DUMP, req,
                                 lambda script, pid, fds: None)
        except (OSError, criu_rpc.RpcError) as e:
            raise criu.failure(what, os.path.join(work, criu.DUMP_LOG), str(e)) from None
        finally:
            ours.close()  # criu swrk exits once its connection is gone
            os.waitpid(child, 0)
        if not resp.success:
            raise criu.failure(what, os.path.join(work, criu.DUMP_LOG), resp.cr_errmsg)
    finally:
        ours.close()
        theirs.close()
        os.close(images_fd)
        os.close(work_fd)


def _spawn_swrk(binary: str, sock: int) -> int:
    """``criu swrk 3`` with /dev/null as stdio (its log is the file); its pid."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                criu_rpc.place_fds({0: null, 1: null, 2: null, criu_rpc.SWRK_FD: sock})
                os.execv(binary, [binary, "swrk", str(criu_rpc.SWRK_FD)])
            finally:
                os._exit(127)
    finally:
        os.close(null)
    return pid
