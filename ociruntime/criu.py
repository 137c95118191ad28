"""Driving CRIU's command line for ``checkpoint`` and ``restore``: options, argv, descriptions.

The pure half of checkpoint/restore (unit-tested in tests/test_criu.py); the parent-side steps
are in lifecycle/checkpoint.py and lifecycle/restore.py.  We run the ``criu`` binary (global
``--criu``) with ``dump``/``pre-dump``/``restore`` rather than its RPC (``criu swrk``, protobuf):
the command line says everything runc's RPC request says, except the ``orphan-pts-master``
notification, so containers with a terminal are refused (see lifecycle/restore.py).

What runc describes to CRIU, and how it is written here:

* the container's root: ``--root`` (on restore a bind of the rootfs in a private mount namespace
  of the criu process, read-only when ``root.readonly`` is set);
* mounts whose source CRIU cannot find inside the container (a bind of a host directory, the
  container's own cgroup directory bound at /sys/fs/cgroup when there is no cgroup namespace, a
  device bound from the host in a user namespace): ``--external mnt[DEST]:DEST`` on dump, and
  ``--external mnt[DEST]:HOST_SOURCE`` on restore.  Which mounts those are is read from the
  init's mountinfo (:func:`external_mountpoints`) rather than from config.json, which may have
  changed since create;
* the network namespace: runc always passes ``--empty-ns net`` (it does not manage network
  configuration).  A namespace of the container's own is also declared external
  (``--external net[INODE]:extRootNetNS``) and on restore the container gets a namespace through
  ``--inherit-fd fd[3]:extRootNetNS``: the configured path, or a fresh one with ``lo`` up, as
  create makes it;
* the cgroup: ``--manage-cgroups[=MODE]`` and, on dump, ``--freeze-cgroup`` (the freezer cgroup,
  or the cgroup2 directory on pure v2); on restore criu runs inside the new container cgroup and
  ``--cgroup-root [CTRL:]PATH`` re-roots every hierarchy there (runc's criuApplyCgroups);
* stdio: ``descriptors.json`` in the image directory holds what fds 0-2 of the init point to
  (``readlink /proc/PID/fd/N``, runc's format); on restore each ``pipe:[...]`` entry is passed as
  ``--inherit-fd fd[N]:pipe:[...]`` so the restored process gets restore's own fds 0-2.
"""

from __future__ import annotations

import os

from ociruntime import jsonio
from ociruntime.errors import OCIError, UsageError
from ociruntime.linux.mountinfo import MountInfo
from ociruntime.record import dataclass

DESCRIPTORS = "descriptors.json"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
CG_MODES = ("soft", "full", "strict", "ignore")
NET_KEY = "extRootNetNS"
# The fd number the restored network namespace is passed on in (0-2 are the container's stdio).
NET_FD = 3
# Error lines every run of criu 3.17 logs without failing (probes for optional features).
_NOISE = ("tun: Unable to create tun", "exited, status=")


@dataclass(frozen=True)
class CriuOptions:
    """runc's checkpoint/restore flags that reach CRIU."""

    image_path: str = ""
    work_path: str = ""
    parent_path: str = ""
    leave_running: bool = False
    tcp_established: bool = False
    tcp_skip_in_flight: bool = False
    link_remap: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False
    file_locks: bool = False
    pre_dump: bool = False
    auto_dedup: bool = False
    manage_cgroups_mode: str = ""
    empty_ns: tuple[str, ...] = ()


def validate(opts: CriuOptions) -> None:
    """runc's checks on the flags, before anything is touched."""
    if opts.manage_cgroups_mode not in ("", *CG_MODES):
        raise UsageError(f'invalid --manage-cgroups-mode value "{opts.manage_cgroups_mode}": '
                         f"use {', '.join(CG_MODES)}")
    for ns in opts.empty_ns:
        if ns != "network":
            raise UsageError(f'--empty-ns: namespace "{ns}" is not supported (only "network")')
    if opts.parent_path and os.path.isabs(opts.parent_path):
        raise UsageError("--parent-path must be relative (to --image-path)")


def _common(opts: CriuOptions) -> list[str]:
    out = []
    for flag, on in (("--tcp-established", opts.tcp_established), ("--ext-unix-sk", opts.ext_unix_sk),
                     ("--shell-job", opts.shell_job), ("--file-locks", opts.file_locks),
                     ("--auto-dedup", opts.auto_dedup)):
        if on:
            out.append(flag)
    mode = opts.manage_cgroups_mode
    out.append(f"--manage-cgroups={mode}" if mode else "--manage-cgroups")
    # runc never restores network configuration: an empty network namespace, always.
    out += ["--empty-ns", "net"]
    return out


def dump_argv(criu: str, pid: int, opts: CriuOptions, *, images: str, work: str, root: str,
              external_mounts: list[str] = (), freeze_cgroup: str = "", net_ino: int = 0) -> list[str]:
    """``criu dump`` (or ``pre-dump``) of the tree rooted at the container's init ``pid``."""
    argv = [criu, "pre-dump" if opts.pre_dump else "dump", "--tree", str(pid),
            "--images-dir", images, "--work-dir", work, "--log-file", DUMP_LOG, "-v4", "--root", root]
    if opts.parent_path:
        argv += ["--prev-images-dir", opts.parent_path]
    if opts.pre_dump or opts.parent_path:
        argv.append("--track-mem")
    if opts.leave_running and not opts.pre_dump:
        argv.append("--leave-running")
    if opts.tcp_skip_in_flight:
        argv.append("--skip-in-flight")
    if opts.link_remap:
        argv.append("--link-remap")
    if freeze_cgroup:
        argv += ["--freeze-cgroup", freeze_cgroup]
    if not opts.pre_dump:
        # Mounts are dumped by the final dump only (runc: not on pre-dump).
        for mp in external_mounts:
            argv += ["--external", f"mnt[{mp}]:{mp}"]
    if net_ino:
        argv += ["--external", f"net[{net_ino}]:{NET_KEY}"]
    return argv + _common(opts)


def restore_argv(criu: str, opts: CriuOptions, *, images: str, work: str, root: str, pidfile: str,
                 mounts: list[tuple[str, str]] = (), inherit: list[tuple[int, str]] = (),
                 cgroup_roots: list[tuple[str, str]] = (),
                 join_ns: list[tuple[str, str]] = ()) -> list[str]:
    """``criu restore``, detached, the restored init made a child of criu's parent (us)."""
    argv = [criu, "restore", "--images-dir", images, "--work-dir", work, "--log-file", RESTORE_LOG,
            "-v4", "--root", root, "--restore-detached", "--restore-sibling", "--pidfile", pidfile,
            "--evasive-devices"]
    for key, source in mounts:
        argv += ["--external", f"mnt[{key}]:{source}"]
    for fd, key in inherit:
        argv += ["--inherit-fd", f"fd[{fd}]:{key}"]
    for ctrl, path in cgroup_roots:
        argv += ["--cgroup-root", f"{ctrl}:{path}" if ctrl else path]
    for ns, path in join_ns:
        argv += ["--join-ns", f"{ns}:{path}"]
    return argv + _common(opts)


# ---- mounts ------------------------------------------------------------------------------------

def _within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def external_mountpoints(mounts: list[MountInfo], cgroupns: bool = False) -> list[str]:
    """Mount points (as the container sees them) whose source is outside the container.

    CRIU restores a mount as a bind of another mount of the same superblock whose root contains
    its root, or as a fresh mount when its root is the superblock's root; anything else (a bind
    of a host directory, a cgroup directory, a host device) must be declared external.  The
    container's root mount is not one of them: it is ``--root``.  In a cgroup namespace of its
    own the container's cgroup mounts are real mounts of its namespace root, which CRIU makes
    anew (runc skips them too); their roots only look like host directories because ``mounts``
    was read from our cgroup namespace.
    """
    ids = {m.mount_id for m in mounts}
    out = []
    for i, m in enumerate(mounts):
        if m.parent_id not in ids or m.mount_point == "/":
            continue  # the root
        if m.root == "/" or (cgroupns and m.fstype in ("cgroup", "cgroup2")):
            continue
        source = False
        for j, o in enumerate(mounts):
            if j == i or o.dev != m.dev:
                continue
            # A strictly wider root, or the same root mounted earlier, can be bound from.
            if (o.root != m.root and _within(m.root, o.root)) or (o.root == m.root and j < i):
                source = True
                break
        if not source:
            out.append(m.mount_point)
    return out


def restore_mounts(rootfs_plan: object) -> list[tuple[str, str]]:
    """(mount point, host source) for each mount the dump may have declared external, from the
    RootfsPlan of the bundle being restored: bind mounts, the container's cgroup directories
    (no cgroup namespace), host devices bound into a user namespace."""
    plan = rootfs_plan
    out: list[tuple[str, str]] = []
    for spec in plan.mounts:  # type: ignore[attr-defined]
        if spec.is_bind:
            out.append((spec.destination, spec.source))
        elif spec.fstype in ("cgroup", "cgroup2") and not plan.cgroupns:  # type: ignore[attr-defined]
            paths = plan.cgroup_paths  # type: ignore[attr-defined]
            if plan.cgroup_layout == "v2" or spec.fstype == "cgroup2":  # type: ignore[attr-defined]
                if "unified" in paths:
                    out.append((spec.destination, paths["unified"]))
            else:
                for hier, path in sorted(paths.items()):
                    out.append((spec.destination.rstrip("/") + "/" + hier, path))
    if plan.userns:  # type: ignore[attr-defined]
        out += [(d.path, d.path) for d in plan.devices]  # type: ignore[attr-defined]
    return out


# ---- cgroups -----------------------------------------------------------------------------------

def cgroup_roots(proc_cgroup: str) -> list[tuple[str, str]]:
    """``--cgroup-root`` pairs from /proc/<criu>/cgroup once criu sits in the container's cgroup:
    the controller list (``cpu,cpuacct``, ``name=systemd``; empty for cgroup2) and the path."""
    out = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    # The controller-less (default) root last: a specific one must not be overridden by it.
    return sorted(out, key=lambda cp: cp[0] == "")


# ---- stdio -------------------------------------------------------------------------------------

def read_descriptors(pid: int) -> list[str]:
    """What fds 0-2 of ``pid`` point to (runc's descriptors.json); "" for a closed fd."""
    out = []
    for fd in range(3):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            out.append("")
    return out


def inherit_fds(descriptors: list[str]) -> list[tuple[int, str]]:
    """The ``--inherit-fd`` pairs for restore: each pipe of the dumped stdio becomes our fd."""
    return [(i, d) for i, d in enumerate(descriptors[:3]) if isinstance(d, str) and "pipe:" in d]


def load_descriptors(images: str) -> list[str]:
    path = os.path.join(images, DESCRIPTORS)
    try:
        with open(path, "rb") as f:
            data = jsonio.loads(f.read())
    except FileNotFoundError:
        raise OCIError(f"restore: {path}: no such file or directory (not a checkpoint image "
                       "directory?)") from None
    except (OSError, ValueError) as e:
        raise OCIError(f"restore: {path}: unreadable ({e})") from None
    if not (isinstance(data, list) and all(isinstance(d, str) for d in data)):
        raise OCIError(f"restore: {path}: not a list of strings")
    return data


def write_descriptors(images: str, descriptors: list[str]) -> None:
    path = os.path.join(images, DESCRIPTORS)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(jsonio.dumps(descriptors).encode())


# ---- running criu ------------------------------------------------------------------------------

def resolve(binary: str) -> str:
    """The absolute path of the criu executable named by ``--criu`` (searched in $PATH)."""
    candidates = [binary] if "/" in binary else [os.path.join(d, binary) for d in os.get_exec_path()]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise OCIError(f"criu binary {binary!r} not found: install criu or pass --criu PATH")


def log_error(log_path: str) -> str:
    """The first telling ``Error`` line of a criu log, without its time stamp and source place."""
    try:
        with open(log_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    found = []
    for line in lines:
        at = line.find("Error (")
        if at < 0:
            continue
        text = line[at:]
        close = text.find("): ")
        msg = text[close + 3:].strip() if close >= 0 else text
        if any(n in msg for n in _NOISE) or msg.endswith("FAILED."):
            continue
        found.append(msg)
    return found[0] if found else ""


def failure(what: str, status: int, log_path: str) -> OCIError:
    """One line: what failed, criu's own reason, and where the whole log is."""
    from ociruntime.lifecycle.wait import status_text

    reason = log_error(log_path)
    detail = f": {reason}" if reason else ""
    return OCIError(f"{what}: criu failed ({status_text(status)}){detail} (log: {log_path})")
