"""What checkpoint and restore tell CRIU: options, mounts, namespaces, stdio, errors.

The pure half of checkpoint/restore (unit-tested in tests/test_criu.py): runc's flags become the
``criu_opts`` of an RPC request (criu_rpc.py sends it to ``criu swrk``, as runc does); the
parent-side steps are in lifecycle/checkpoint.py and lifecycle/restore.py.

What runc describes to CRIU, and how it is written here (criu_opts field names; the command
line's spelling in brackets):

* the container's root: ``root`` (on restore a bind of the rootfs in a private mount namespace
  of the criu process, read-only when ``root.readonly`` is set);
* mounts whose source CRIU cannot find inside the container (a bind of a host directory, the
  container's own cgroup directory bound at /sys/fs/cgroup when there is no cgroup namespace, a
  device bound from the host in a user namespace): ``external`` ``mnt[DEST]:DEST`` on dump, and
  ``mnt[DEST]:HOST_SOURCE`` on restore.  Which mounts those are is read from the init's
  mountinfo (:func:`external_mountpoints`) rather than from config.json, which may have changed
  since create;
* the network namespace: runc always sets ``empty_ns`` to CLONE_NEWNET (``--empty-ns net``: it
  does not manage network configuration).  A namespace of the container's own is also declared
  external (``net[INODE]:extRootNetNS``) and on restore the container gets a namespace through
  ``inherit_fd`` {extRootNetNS, NET_FD}: the configured path, or a fresh one with ``lo`` up, as
  create makes it;
* the cgroup: ``manage_cgroups_mode`` and, on dump, ``freeze_cgroup`` (the freezer cgroup, or
  the cgroup2 directory on pure v2); on restore criu runs inside the new container cgroup and
  ``cg_root`` [CTRL:]PATH re-roots every hierarchy there (runc's criuApplyCgroups);
* stdio: ``descriptors.json`` in the image directory holds what fds 0-2 of the init point to
  (``readlink /proc/PID/fd/N``, runc's format); on restore each ``pipe:[...]`` entry becomes an
  ``inherit_fd`` so the restored process gets restore's own fds 0-2;
* a terminal: ``orphan_pts_master``: the pty slave is dumped without its master (held by the
  engine), and on restore CRIU makes a new pair and hands us the master (the
  ``orphan-pts-master`` notification), which goes to ``--console-socket``.
"""

from __future__ import annotations

import os
from typing import Any

from ociruntime import criu_rpc, jsonio
from ociruntime.errors import OCIError, UsageError
from ociruntime.linux.mountinfo import MountInfo
from ociruntime.record import dataclass

DESCRIPTORS = "descriptors.json"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
CG_MODES = ("soft", "full", "strict", "ignore")
NET_KEY = "extRootNetNS"
# The fd number criu gets the restored network namespace on (0-2 are the container's stdio, 3 is
# criu's end of the RPC socket).
NET_FD = 4
# The fds criu reaches the image and work directories on, on restore (lifecycle/restore.py opens
# them in criu's own mount namespace, criu being its own RPC peer there).
IMAGES_FD, WORK_FD = 5, 6
CLONE_NEWNET = 0x40000000
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


def _common(opts: CriuOptions) -> dict[str, Any]:
    """The criu_opts both dump and restore carry (runc's rpcOpts)."""
    out: dict[str, Any] = {"log_level": 4, "notify_scripts": True, "manage_cgroups": True,
                           "manage_cgroups_mode": criu_rpc.CG_MODE[opts.manage_cgroups_mode or "soft"],
                           # runc never restores network configuration: an empty network
                           # namespace, always (its setEmptyNsMask).
                           "empty_ns": CLONE_NEWNET,
                           # A terminal's slave whose master is outside the tree (conmon's, the
                           # console socket client's): dumped, and re-created with a new master.
                           "orphan_pts_master": True}
    for name in ("tcp_established", "ext_unix_sk", "shell_job", "file_locks", "auto_dedup"):
        if getattr(opts, name):
            out[name] = True
    return out


def dump_opts(pid: int, opts: CriuOptions, *, images_fd: int, work_fd: int, root: str,
              external_mounts: list[str] = (), freeze_cgroup: str = "", net_ino: int = 0) -> dict[str, Any]:
    """criu_opts of a dump (or pre-dump) of the tree rooted at the container's init ``pid``."""
    out = {**_common(opts), "images_dir_fd": images_fd, "work_dir_fd": work_fd, "log_file": DUMP_LOG,
           "pid": pid, "root": root}
    if opts.parent_path:
        out["parent_img"] = opts.parent_path
    if opts.pre_dump or opts.parent_path:
        out["track_mem"] = True
    if opts.leave_running and not opts.pre_dump:
        out["leave_running"] = True
    if opts.tcp_skip_in_flight:
        out["tcp_skip_in_flight"] = True
    if opts.link_remap:
        out["link_remap"] = True
    if freeze_cgroup:
        out["freeze_cgroup"] = freeze_cgroup
    external = []
    if not opts.pre_dump:
        # Mounts are dumped by the final dump only (runc: not on pre-dump).
        external += [f"mnt[{mp}]:{mp}" for mp in external_mounts]
    if net_ino:
        external.append(f"net[{net_ino}]:{NET_KEY}")
    if external:
        out["external"] = external
    return out


def restore_opts(opts: CriuOptions, *, images_fd: int, work_fd: int, root: str,
                 mounts: list[tuple[str, str]] = (), inherit: list[tuple[int, str]] = (),
                 cgroup_roots: list[tuple[str, str]] = (),
                 join_ns: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """criu_opts of a restore whose init becomes criu's sibling: a child of ours (rst_sibling)."""
    out = {**_common(opts), "images_dir_fd": images_fd, "work_dir_fd": work_fd,
           "log_file": RESTORE_LOG, "root": root, "rst_sibling": True, "evasive_devices": True,
           # criu 3.17's default mount engine (mount-v2) cannot copy the sharing of an external
           # bind whose host source is shared, as systemd makes every mount: restore failed on
           # hybrid hosts ("Failed to copy sharing from -1:/sys/fs/cgroup/unified/...").  The
           # older engine restores the same images everywhere we test.
           "mntns_compat_mode": True}
    if mounts:
        out["external"] = [f"mnt[{key}]:{source}" for key, source in mounts]
    if inherit:
        out["inherit_fd"] = [(key, fd) for fd, key in inherit]
    if cgroup_roots:
        out["cg_root"] = list(cgroup_roots)
    if join_ns:
        out["join_ns"] = list(join_ns)
    return out


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


def failure(what: str, log_path: str, fallback: str = "") -> OCIError:
    """One line: what failed, criu's own reason (its log's first error, else ``fallback``), and
    where the whole log is."""
    reason = log_error(log_path) or fallback
    detail = f": {reason}" if reason else ""
    return OCIError(f"{what}: criu failed{detail} (log: {log_path})")
