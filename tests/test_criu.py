"""checkpoint/restore without CRIU: flags -> options -> criu_opts, mounts, descriptors, errors."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from ociruntime import criu
from ociruntime.cli.args import parse
from ociruntime.cli.cmd_checkpoint import FLAGS as CHECKPOINT_FLAGS
from ociruntime.cli.cmd_checkpoint import criu_options
from ociruntime.cli.cmd_restore import FLAGS as RESTORE_FLAGS
from ociruntime.errors import OCIError, UsageError
from ociruntime.linux.mountinfo import parse_mountinfo

# /proc/<init>/mountinfo of a default busybox container (pure cgroup v2 guest), plus /tmp tmpfs
# and /data bound from the host.
V2_MOUNTINFO = b"""\
53 37 0:30 /b/rootfs / ro,nosuid,relatime - tmpfs tmpfs rw,inode64
54 53 0:35 / /proc rw,relatime - proc proc rw
55 53 0:36 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
56 55 0:37 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
57 55 0:38 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64
58 55 0:33 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
59 53 0:39 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
60 59 0:32 /c1 /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
61 53 0:40 / /tmp rw,nosuid,nodev,relatime - tmpfs tmpfs rw,inode64
62 53 0:30 /data /data rw,relatime - tmpfs tmpfs rw,inode64
63 53 0:30 /b/rootfs/etc /mnt/etc rw,relatime - tmpfs tmpfs rw,inode64
40 54 0:41 / /proc/acpi ro,nosuid,nodev,noexec,relatime - tmpfs none rw,inode64
41 54 0:36 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
45 54 0:35 /bus /proc/bus ro,relatime - proc proc rw
"""

# Hybrid host: a tmpfs at /sys/fs/cgroup with one bind per hierarchy, and a host device bound in.
HYBRID_MOUNTINFO = b"""\
500 400 8:1 /var/lib/b/rootfs / ro,relatime - ext4 /dev/sda1 rw
501 500 0:50 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
502 501 0:51 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs ro,mode=755
503 502 0:25 /c1 /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu,cpuacct
504 502 0:26 /c1 /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,name=systemd
505 500 0:5 /null /dev/null rw,nosuid - devtmpfs udev rw
506 500 8:1 /srv/with\\040space /srv/x rw,relatime - ext4 /dev/sda1 rw
507 500 8:1 /srv/with\\040space /srv/y rw,relatime - ext4 /dev/sda1 rw
"""


def opts(**kw) -> criu.CriuOptions:
    return criu.CriuOptions(image_path="/img", **kw)


# ---- options -----------------------------------------------------------------------------------

def test_flags_to_options() -> None:
    p = parse(["--image-path", "/i", "--work-path=/w", "--leave-running", "--tcp-established",
               "--ext-unix-sk", "--shell-job", "--file-locks", "--manage-cgroups-mode", "full",
               "--empty-ns", "network", "--pre-dump", "--parent-path", "../p", "-auto-dedup", "ID"],
              CHECKPOINT_FLAGS)
    o = criu_options(p)
    assert o == criu.CriuOptions(image_path="/i", work_path="/w", parent_path="../p", leave_running=True,
                                 tcp_established=True, ext_unix_sk=True, shell_job=True, file_locks=True,
                                 pre_dump=True, auto_dedup=True, manage_cgroups_mode="full",
                                 empty_ns=("network",))
    r = criu_options(parse(["--image-path", "/i", "--shell-job", "ID"], RESTORE_FLAGS))
    assert r == criu.CriuOptions(image_path="/i", shell_job=True)
    with pytest.raises(UsageError, match="lazy-pages"):
        criu_options(parse(["--lazy-pages", "ID"], RESTORE_FLAGS))


@pytest.mark.parametrize(("kw", "msg"), [
    ({"manage_cgroups_mode": "hard"}, "invalid --manage-cgroups-mode"),
    ({"empty_ns": ("pid",)}, '"pid" is not supported'),
    ({"parent_path": "/abs"}, "must be relative"),
])
def test_validate_refuses(kw: dict, msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        criu.validate(opts(**kw))


@pytest.mark.parametrize("mode", ["", *criu.CG_MODES])
def test_validate_accepts_modes(mode: str) -> None:
    criu.validate(opts(manage_cgroups_mode=mode, empty_ns=("network",), parent_path="../p"))


# ---- criu_opts ---------------------------------------------------------------------------------

def test_dump_opts_default() -> None:
    got = criu.dump_opts(42, opts(), images_fd=5, work_fd=6, root="/b/rootfs",
                         external_mounts=["/data", "/sys/fs/cgroup"], freeze_cgroup="/sys/fs/cgroup/c1",
                         net_ino=4026532000)
    assert got == {"images_dir_fd": 5, "work_dir_fd": 6, "log_file": "dump.log", "log_level": 4,
                   "pid": 42, "root": "/b/rootfs", "notify_scripts": True, "manage_cgroups": True,
                   "manage_cgroups_mode": 3, "empty_ns": 0x40000000, "orphan_pts_master": True,
                   "freeze_cgroup": "/sys/fs/cgroup/c1",
                   "external": ["mnt[/data]:/data", "mnt[/sys/fs/cgroup]:/sys/fs/cgroup",
                                "net[4026532000]:extRootNetNS"]}


def test_dump_opts_flags() -> None:
    o = opts(leave_running=True, tcp_established=True, tcp_skip_in_flight=True, link_remap=True,
             ext_unix_sk=True, shell_job=True, file_locks=True, auto_dedup=True,
             manage_cgroups_mode="strict", parent_path="../pre")
    got = criu.dump_opts(7, o, images_fd=5, work_fd=5, root="/r")
    for name in ("leave_running", "tcp_established", "tcp_skip_in_flight", "link_remap", "ext_unix_sk",
                 "shell_job", "file_locks", "auto_dedup", "track_mem"):
        assert got[name] is True, name
    assert got["parent_img"] == "../pre"
    assert got["manage_cgroups_mode"] == 5
    assert "external" not in got


def test_pre_dump_opts() -> None:
    got = criu.dump_opts(7, opts(pre_dump=True, leave_running=True), images_fd=5, work_fd=5, root="/r",
                         external_mounts=["/data"])
    assert got["track_mem"] is True
    # pre-dump always leaves the tree running, and dumps no mounts (runc).
    assert "leave_running" not in got and "external" not in got


def test_restore_opts() -> None:
    got = criu.restore_opts(opts(tcp_established=True, manage_cgroups_mode="ignore"), images_fd=5,
                            work_fd=6, root="/run/x/c/criu-root",
                            mounts=[("/data", "/host/data"), ("/sys/fs/cgroup", "/sys/fs/cgroup/c2")],
                            inherit=[(0, "pipe:[12]"), (4, "extRootNetNS")],
                            cgroup_roots=[("cpu,cpuacct", "/c2"), ("", "/c2")],
                            join_ns=[("ipc", "/proc/9/ns/ipc")])
    assert got == {"images_dir_fd": 5, "work_dir_fd": 6, "log_file": "restore.log", "log_level": 4,
                   "root": "/run/x/c/criu-root", "rst_sibling": True, "evasive_devices": True,
                   "mntns_compat_mode": True,
                   "notify_scripts": True, "manage_cgroups": True, "manage_cgroups_mode": 0,
                   "empty_ns": 0x40000000, "orphan_pts_master": True, "tcp_established": True,
                   "external": ["mnt[/data]:/host/data", "mnt[/sys/fs/cgroup]:/sys/fs/cgroup/c2"],
                   "inherit_fd": [("pipe:[12]", 0), ("extRootNetNS", 4)],
                   "cg_root": [("cpu,cpuacct", "/c2"), ("", "/c2")],
                   "join_ns": [("ipc", "/proc/9/ns/ipc")]}


# ---- mounts ------------------------------------------------------------------------------------

def test_external_mountpoints_v2() -> None:
    mounts = parse_mountinfo(V2_MOUNTINFO)
    # The cgroup dir and the host directory are external; the masked /proc/kcore (a bind of the
    # container's /dev/null), /proc/bus and a bind from inside the rootfs are CRIU's own.
    assert criu.external_mountpoints(mounts) == ["/sys/fs/cgroup", "/data"]


def test_external_mountpoints_in_a_cgroup_namespace() -> None:
    # With its own cgroup namespace the container's cgroup2 mount is CRIU's to make, as runc has it
    # (podman's containers on v2): declaring it external left restore with "No mapping".
    mounts = parse_mountinfo(V2_MOUNTINFO)
    assert criu.external_mountpoints(mounts, cgroupns=True) == ["/data"]


def test_external_mountpoints_hybrid() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    assert mounts[6].root == "/srv/with space"
    # The second bind of one host directory is CRIU's bind of the first.
    assert criu.external_mountpoints(mounts) == [
        "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd", "/dev/null", "/srv/x"]


def _spec(dest: str, fstype: str = "bind", source: str = "", is_bind: bool = False):
    return SimpleNamespace(destination=dest, fstype=fstype, source=source, is_bind=is_bind)


def test_restore_mounts_v2() -> None:
    plan = SimpleNamespace(
        mounts=[_spec("/proc", "proc", "proc"), _spec("/data", "none", "/host/data", True),
                _spec("/sys/fs/cgroup", "cgroup", "cgroup")],
        cgroupns=False, cgroup_layout="v2", cgroup_paths={"unified": "/sys/fs/cgroup/c2"},
        userns=False, devices=[])
    assert criu.restore_mounts(plan) == [("/data", "/host/data"), ("/sys/fs/cgroup", "/sys/fs/cgroup/c2")]


def test_restore_mounts_hybrid_userns() -> None:
    plan = SimpleNamespace(
        mounts=[_spec("/sys/fs/cgroup", "cgroup", "cgroup")], cgroupns=False, cgroup_layout="hybrid",
        cgroup_paths={"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/c2", "systemd": "/sys/fs/cgroup/systemd/c2"},
        userns=True, devices=[SimpleNamespace(path="/dev/null")])
    assert criu.restore_mounts(plan) == [
        ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/c2"),
        ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/c2"), ("/dev/null", "/dev/null")]


def test_restore_mounts_cgroupns_are_real_mounts() -> None:
    plan = SimpleNamespace(mounts=[_spec("/sys/fs/cgroup", "cgroup", "cgroup")], cgroupns=True,
                           cgroup_layout="v2", cgroup_paths={"unified": "/x"}, userns=False, devices=[])
    assert criu.restore_mounts(plan) == []


def test_cgroup_roots() -> None:
    text = "12:cpu,cpuacct:/c2\n1:name=systemd:/c2\n0::/c2\n"
    assert criu.cgroup_roots(text) == [("cpu,cpuacct", "/c2"), ("name=systemd", "/c2"), ("", "/c2")]
    assert criu.cgroup_roots("0::/init.scope\n") == [("", "/init.scope")]


# ---- descriptors -------------------------------------------------------------------------------

def test_descriptors_round_trip(tmp_path) -> None:
    descs = ["pipe:[100]", "/dev/null", "pipe:[101]"]
    criu.write_descriptors(str(tmp_path), descs)
    assert json.loads((tmp_path / "descriptors.json").read_text()) == descs
    assert oct((tmp_path / "descriptors.json").stat().st_mode & 0o777) == "0o600"
    assert criu.load_descriptors(str(tmp_path)) == descs
    # Only pipes are handed over (runc): a file is reopened by CRIU itself.
    assert criu.inherit_fds(descs) == [(0, "pipe:[100]"), (2, "pipe:[101]")]


def test_read_descriptors_of_self() -> None:
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(r, 0)
        os.write(ready_w, b"1")
        os.read(0, 1)
        os._exit(0)
    try:
        os.read(ready_r, 1)
        descs = criu.read_descriptors(pid)
        assert descs[0] == f"pipe:[{os.fstat(r).st_ino}]"
        assert len(descs) == 3
    finally:
        os.write(w, b"x")
        os.waitpid(pid, 0)
        for fd in (r, w, ready_r, ready_w):
            os.close(fd)


@pytest.mark.parametrize(("content", "msg"), [
    (None, "no such file"), (b"{", "unreadable"), (b'{"a": 1}', "not a list"), (b"[1]", "not a list")])
def test_load_descriptors_errors(tmp_path, content: bytes | None, msg: str) -> None:
    if content is not None:
        (tmp_path / "descriptors.json").write_bytes(content)
    with pytest.raises(OCIError, match=msg):
        criu.load_descriptors(str(tmp_path))


# ---- errors ------------------------------------------------------------------------------------

def test_log_error(tmp_path) -> None:
    log = tmp_path / "dump.log"
    log.write_text(
        "(00.1) Error (criu/tun.c:85): tun: Unable to create tun: No such file or directory\n"
        "(00.2) mnt: Inspecting sharing on 60\n"
        "(00.7) Error (criu/mount.c:753): mnt: 60:./sys/fs/cgroup doesn't have a proper root mount\n"
        "(01.0) Error (criu/cr-dump.c:2053): Dumping FAILED.\n")
    assert criu.log_error(str(log)) == "mnt: 60:./sys/fs/cgroup doesn't have a proper root mount"
    err = criu.failure("checkpoint", str(log), "criu's own message")
    assert str(err) == ("checkpoint: criu failed: mnt: 60:./sys/fs/cgroup doesn't have "
                        f"a proper root mount (log: {log})")
    # Without a telling log line, criu's RPC answer (cr_errmsg) is the reason.
    assert str(criu.failure("restore", str(tmp_path / "none"), "no such file")) == (
        f"restore: criu failed: no such file (log: {tmp_path / 'none'})")
    assert criu.log_error(str(tmp_path / "none")) == ""


def test_resolve(tmp_path, monkeypatch) -> None:
    exe = tmp_path / "criu"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert criu.resolve("criu") == str(exe)
    assert criu.resolve(str(exe)) == str(exe)
    with pytest.raises(OCIError, match="not found"):
        criu.resolve(str(tmp_path / "nope"))
