"""prepare_rootfs / pivot / finalize_rootfs against a tiny busybox rootfs, including hostile images.

Each test forks a child that unshares its mount namespace and makes "/" a slave before doing
anything, runs the three steps and inspects the result from inside the new root; the result
comes back as JSON over a pipe.  The parent checks the host side (directories stay empty) and
that its own /proc/self/mountinfo is unchanged.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from forked import CLONE_NEWCGROUP, CLONE_NEWNET, CLONE_NEWNS, ChildError, run_in_child

from ociruntime.linux import mount as m
from ociruntime.linux.libc import LIBC
from ociruntime.linux.procfs import open_procfs, write_proc
from ociruntime.rootfs.mounts import prepare_rootfs
from ociruntime.rootfs.paths import finalize_rootfs
from ociruntime.rootfs.pivot import parse_mountinfo, pivot
from ociruntime.rootfs.plan import RootfsPlan, build_plan

pytestmark = pytest.mark.root

BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Path]:
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox not installed")
    rootfs = tmp_path / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "run/sub"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for name in ("sh", "ls", "cat"):
        (rootfs / "bin" / name).symlink_to("busybox")
    (rootfs / "run" / "sub" / "seed").write_text("seeded")
    (rootfs / "run" / "link").symlink_to("/etc/passwd")
    (tmp_path / "hostdata").mkdir()
    (tmp_path / "hostdata" / "file").write_text("data")
    (tmp_path / "hostfile").write_text("hostname-file\n")
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


SYSFS = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]}


def base_mounts() -> list[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        SYSFS,
    ]


def make_plan(bundle: Path, mounts: list[dict], linux: dict | None = None, *, readonly: bool = False,
              terminal: bool = False, cgroupns: bool = False, layout: str = "hybrid",
              no_pivot: bool = False, mntns: bool = True) -> RootfsPlan:
    linux = dict(linux or {})
    linux["namespaces"] = [{"type": "mount"}] if mntns else []
    if cgroupns:
        linux["namespaces"].append({"type": "cgroup"})
    config = {"root": {"path": "rootfs", "readonly": readonly}, "process": {"terminal": terminal},
              "mounts": mounts, "linux": linux}
    cgroup_paths = {h: f"/sys/fs/cgroup/{h}" for h in sorted(os.listdir("/sys/fs/cgroup"))}
    if layout == "v2":
        cgroup_paths = {"unified": "/sys/fs/cgroup/unified"}
    return build_plan(config, str(bundle), no_pivot=no_pivot, cgroup_paths=cgroup_paths, cgroup_layout=layout)


def setup_all(plan: RootfsPlan, hook: Callable[[], None] | None = None) -> None:
    prepare_rootfs(plan)
    if hook is not None:
        hook()
    pivot(plan)
    finalize_rootfs(plan)


def mounts_by_point(procfd: int | None = None) -> dict[str, dict]:
    if procfd is None:
        with open("/proc/self/mountinfo", "rb") as f:
            data = f.read()
    else:
        fd = os.open("self/mountinfo", os.O_RDONLY, dir_fd=procfd)
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    out = {}
    for line, entry in zip(data.decode().splitlines(), parse_mountinfo(data), strict=True):
        fields = line.split(" ")
        out[entry.mount_point] = {"fstype": entry.fstype, "opts": fields[5].split(","), "root": fields[3]}
    return out


def node(path: str) -> list:
    st = os.lstat(path)
    return [stat.S_IFMT(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode),
            st.st_uid, st.st_gid]


def test_full_setup(bundle: Path) -> None:
    mounts = [
        *base_mounts(),
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime"]},
        {"destination": "/data", "type": "bind", "source": "hostdata",
         "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/etc/hostname", "type": "bind", "source": str(bundle / "hostfile"),
         "options": ["bind", "nosuid"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "tmpcopyup"]},
    ]
    linux = {
        "devices": [{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 8576,
                     "uid": 12, "gid": 34}],
        "maskedPaths": ["/proc/timer_list", "/proc/acpi", "/proc/does-not-exist", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/not-here"],
    }
    plan = make_plan(bundle, mounts, linux, terminal=True)
    probe = f"ociruntime-test-{os.getpid()}"

    def child() -> dict:
        old = os.umask(0o077)  # must not leak into device modes
        setup_all(plan)
        os.umask(old)
        out: dict = {"mounts": mounts_by_point(), "cwd": os.getcwd(),
                     "busybox": os.path.exists("/bin/busybox")}
        out["devs"] = {p: node(f"/dev/{p}") for p in ("null", "zero", "full", "random", "urandom", "tty",
                                                      "net/tun")}
        out["links"] = {p: os.readlink(f"/dev/{p}") for p in ("ptmx", "fd", "stdin", "stdout", "stderr")}
        out["console"] = node("/dev/console")
        out["timer_list"] = node("/proc/timer_list")
        out["firmware"] = os.listdir("/sys/firmware")
        out["run"] = sorted(os.listdir("/run"))
        out["seed"] = Path("/run/sub/seed").read_text()
        out["runlink"] = os.readlink("/run/link")
        out["hostname"] = Path("/etc/hostname").read_text()
        out["data"] = Path("/data/file").read_text()
        errs = {}
        for label, action in (
            ("data", lambda: Path("/data/new").write_text("x")),
            ("sysctl", lambda: Path("/proc/sys/kernel/hostname").write_text("x")),
            ("cgroup", lambda: os.mkdir(f"/sys/fs/cgroup/memory/{probe}")),
            ("cgroup_tmpfs", lambda: os.mkdir("/sys/fs/cgroup/x")),
        ):
            try:
                action()
                errs[label] = 0
            except OSError as e:
                errs[label] = e.errno
        out["errs"] = errs
        return out

    try:
        out = run_in_child(child)
    finally:
        # Only if the read-only defence failed: never leave a cgroup behind on the host.
        if os.path.isdir(f"/sys/fs/cgroup/memory/{probe}"):
            os.rmdir(f"/sys/fs/cgroup/memory/{probe}")
    mi = out["mounts"]
    assert out["cwd"] == "/" and out["busybox"]
    assert mi["/"]["root"].endswith("/rootfs")
    assert mi["/proc"]["fstype"] == "proc" and "noexec" in mi["/proc"]["opts"]
    assert mi["/dev"]["fstype"] == "tmpfs" and "nosuid" in mi["/dev"]["opts"]
    assert mi["/dev/pts"]["fstype"] == "devpts"
    assert mi["/sys"]["fstype"] == "sysfs" and "ro" in mi["/sys"]["opts"]
    assert "ro" in mi["/data"]["opts"] and mi["/data"]["root"].endswith("/hostdata")
    assert "nosuid" in mi["/etc/hostname"]["opts"] and "rw" in mi["/etc/hostname"]["opts"]
    assert mi["/run"]["fstype"] == "tmpfs"
    # Every cgroup mount is read-only without a cgroup namespace, even though "ro" was not asked.
    cgroup_mounts = {p: v for p, v in mi.items() if p.startswith("/sys/fs/cgroup")}
    assert "/sys/fs/cgroup/memory" in cgroup_mounts and "/sys/fs/cgroup/unified" in cgroup_mounts
    assert all("ro" in v["opts"] for v in cgroup_mounts.values())
    assert out["errs"] == {"data": errno.EROFS, "sysctl": errno.EROFS, "cgroup": errno.EROFS,
                           "cgroup_tmpfs": errno.EROFS}
    # Devices: right type, numbers, exact permission bits despite the umask, owner.
    chr_ = stat.S_IFCHR
    assert out["devs"]["null"] == [chr_, 1, 3, 0o666, 0, 0]
    assert out["devs"]["zero"][:3] == [chr_, 1, 5] and out["devs"]["full"][:3] == [chr_, 1, 7]
    assert out["devs"]["random"][:3] == [chr_, 1, 8] and out["devs"]["urandom"][:3] == [chr_, 1, 9]
    assert out["devs"]["tty"][:3] == [chr_, 5, 0]
    assert out["devs"]["net/tun"] == [chr_, 10, 200, 0o600, 12, 34]
    assert out["links"] == {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                            "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
    assert out["console"][0] == stat.S_IFREG
    # Masks: files become /dev/null, directories an empty read-only tmpfs.
    assert out["timer_list"][:3] == [chr_, 1, 3]
    assert mi["/sys/firmware"]["fstype"] == "tmpfs" and "ro" in mi["/sys/firmware"]["opts"]
    assert out["firmware"] == []
    assert "ro" in mi["/proc/sys"]["opts"]
    # tmpcopyup carried the image's /run content, symlinks copied as links.
    assert out["run"] == ["link", "sub"] and out["seed"] == "seeded" and out["runlink"] == "/etc/passwd"
    assert out["hostname"] == "hostname-file\n" and out["data"] == "data"


def test_no_pivot_and_readonly_root(bundle: Path) -> None:
    plan = make_plan(bundle, base_mounts(), readonly=True, no_pivot=True)

    def child() -> dict:
        setup_all(plan)
        try:
            Path("/newfile").write_text("x")
            err = 0
        except OSError as e:
            err = e.errno
        mi = mounts_by_point()
        return {"err": err, "busybox": os.path.exists("/bin/busybox"), "proc": mi["/proc"]["fstype"],
                "root_opts": mi["/"]["opts"], "tmp_ok": os.path.isdir("/tmp")}

    out = run_in_child(child)
    assert out["busybox"] and out["proc"] == "proc" and out["tmp_ok"]
    assert out["err"] == errno.EROFS and "ro" in out["root_opts"]
    assert not (bundle / "rootfs" / "newfile").exists()


def test_cgroupns_fresh_hierarchies(bundle: Path) -> None:
    mounts = [*base_mounts(), {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                               "options": ["nosuid", "noexec", "nodev", "ro"]}]
    plan = make_plan(bundle, mounts, cgroupns=True)

    def child() -> dict:
        setup_all(plan)
        return {p: v for p, v in mounts_by_point().items() if p.startswith("/sys/fs/cgroup")}

    out = run_in_child(child, CLONE_NEWNS | CLONE_NEWCGROUP)
    assert out["/sys/fs/cgroup"]["fstype"] == "tmpfs"
    assert out["/sys/fs/cgroup/memory"]["fstype"] == "cgroup"
    assert out["/sys/fs/cgroup/unified"]["fstype"] == "cgroup2"
    assert out["/sys/fs/cgroup/systemd"]["fstype"] == "cgroup"
    assert all("ro" in v["opts"] for v in out.values())


@pytest.mark.parametrize("cgroupns", [False, True])
def test_cgroup_v2_layout(bundle: Path, cgroupns: bool) -> None:
    mounts = [*base_mounts(), {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                               "options": ["nosuid", "noexec", "nodev", "ro"]}]
    plan = make_plan(bundle, mounts, cgroupns=cgroupns, layout="v2")

    def child() -> dict:
        setup_all(plan)
        mi = mounts_by_point()["/sys/fs/cgroup"]
        return {**mi, "controllers": os.path.exists("/sys/fs/cgroup/cgroup.controllers")}

    flags = CLONE_NEWNS | (CLONE_NEWCGROUP if cgroupns else 0)
    out = run_in_child(child, flags)
    assert out["fstype"] == "cgroup2" and "ro" in out["opts"] and out["controllers"]
    if not cgroupns:
        assert out["root"] == "/"  # the container's own (here: the root) cgroup, bound


def test_resolv_conf_symlink_to_host_stays_inside(bundle: Path, tmp_path: Path) -> None:
    host = tmp_path / "HOST"
    host.mkdir()
    (bundle / "rootfs" / "etc" / "resolv.conf").symlink_to(host / "x")
    mounts = [*base_mounts(), {"destination": "/etc/resolv.conf", "type": "bind",
                               "source": str(bundle / "hostfile"), "options": ["bind", "ro"]}]
    plan = make_plan(bundle, mounts)

    def child() -> str:
        setup_all(plan)
        # The bind followed the link *inside* the container root.
        return Path("/etc/resolv.conf").read_text()

    assert run_in_child(child) == "hostname-file\n"
    assert list(host.iterdir()) == []


def test_dev_symlink_to_host_stays_empty(bundle: Path, tmp_path: Path) -> None:
    hostdev = tmp_path / "HOSTDEV"
    hostdev.mkdir()
    (bundle / "rootfs" / "dev").rmdir()
    (bundle / "rootfs" / "dev").symlink_to(hostdev)
    mounts = [base_mounts()[0]]  # proc only: no /dev mount at all
    linux = {"devices": [{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200}]}
    plan = make_plan(bundle, mounts, linux, terminal=True)

    def child() -> list:
        setup_all(plan)
        return sorted(os.listdir("/dev"))

    listing = run_in_child(child)
    assert "null" in listing and "ptmx" in listing and "console" in listing
    assert list(hostdev.iterdir()) == []
    inside = bundle / "rootfs" / str(hostdev).lstrip("/")
    assert (inside / "null").is_char_device()


def test_proc_symlink_is_refused(bundle: Path) -> None:
    (bundle / "rootfs" / "proc").rmdir()
    (bundle / "rootfs" / "proc").symlink_to("/x")
    plan = make_plan(bundle, base_mounts())
    with pytest.raises(ChildError) as info:
        run_in_child(lambda: prepare_rootfs(plan))
    out = info.value.out
    assert out["errno"] == errno.ENOTDIR and out["filename"] == "/proc"
    # runc's text
    want = 'mount proc on /proc: filesystem "proc" must be mounted on ordinary directory'
    assert out["strerror"].startswith(want)
    assert not (bundle / "rootfs" / "x").exists()


def test_proc_on_a_file_is_refused(bundle: Path) -> None:
    (bundle / "rootfs" / "proc").rmdir()
    (bundle / "rootfs" / "proc").write_text("")
    plan = make_plan(bundle, base_mounts())
    with pytest.raises(ChildError) as info:
        run_in_child(lambda: prepare_rootfs(plan))
    out = info.value.out
    assert out["errno"] == errno.ENOTDIR
    assert 'filesystem "proc" must be mounted on ordinary directory' in out["strerror"]


def test_sysfs_through_symlinked_parent_is_refused(bundle: Path) -> None:
    (bundle / "rootfs" / "sys").rmdir()
    (bundle / "rootfs" / "sys").symlink_to("tmp")
    plan = make_plan(bundle, base_mounts())
    with pytest.raises(ChildError) as info:
        run_in_child(lambda: prepare_rootfs(plan))
    assert info.value.out["errno"] == errno.ENOTDIR and info.value.out["filename"] == "/sys"
    assert 'filesystem "sysfs" must be mounted on ordinary directory' in info.value.out["strerror"]


def test_mount_redirected_into_proc_is_refused(bundle: Path) -> None:
    # The plan sees "/foo"; inside the image /foo -> /proc/self/attr.
    (bundle / "rootfs" / "foo").symlink_to("/proc/self/attr")
    mounts = [base_mounts()[0], {"destination": "/foo", "type": "tmpfs", "source": "tmpfs"}]
    plan = make_plan(bundle, mounts)
    with pytest.raises(ChildError) as info:
        run_in_child(lambda: prepare_rootfs(plan))
    out = info.value.out
    assert out["errno"] == errno.EPERM and out["filename"] == "/foo"
    assert "inside /proc" in out["strerror"]


def test_fake_dev_null_refuses_masking(bundle: Path) -> None:
    linux = {"maskedPaths": ["/proc/timer_list"]}
    plan = make_plan(bundle, base_mounts(), linux)
    null = bundle / "rootfs" / "dev" / "null"

    def swap() -> None:
        # What a racing createContainer hook would do: /dev/null -> a procfs file.
        null.unlink()
        null.symlink_to("/proc/sys/kernel/hostname")

    with pytest.raises(ChildError) as info:
        run_in_child(lambda: setup_all(plan, swap))
    out = info.value.out
    assert out["errno"] == errno.EPERM and "not the null device" in out["strerror"]


def test_missing_bind_source_names_the_mount(bundle: Path) -> None:
    mounts = [{"destination": "/data", "type": "bind", "source": "nope", "options": ["rbind"]}]
    plan = make_plan(bundle, mounts)
    with pytest.raises(ChildError) as info:
        run_in_child(lambda: prepare_rootfs(plan))
    out = info.value.out
    assert out["errno"] == errno.ENOENT and out["filename"] == "/data"
    assert out["strerror"].startswith(f"bind mount {bundle}/nope on /data: mount source")
    assert not (bundle / "rootfs" / "data").exists()


def test_write_proc_not_redirected_by_decoy_in_rootfs(bundle: Path, tmp_path: Path) -> None:
    decoy = tmp_path / "decoy"
    decoy.write_text("decoy\n")
    plan = make_plan(bundle, base_mounts())

    def child() -> str:
        procfd = open_procfs()
        prepare_rootfs(plan)
        # A hook binds a host decoy over the container's somaxconn before the sysctl is written.
        m.mount(str(decoy), str(bundle / "rootfs/proc/sys/net/core/somaxconn"), None, m.MS_BIND)
        pivot(plan)
        finalize_rootfs(plan)
        write_proc(procfd, "sys/net/core/somaxconn", "4321")
        fd = os.open("sys/net/core/somaxconn", os.O_RDONLY, dir_fd=procfd)
        try:
            return os.read(fd, 32).decode().strip()
        finally:
            os.close(fd)

    assert run_in_child(child, CLONE_NEWNS | CLONE_NEWNET) == "4321"
    assert decoy.read_text() == "decoy\n"


def test_user_namespace_devices_and_locked_flags(bundle: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    mounts = [
        base_mounts()[1],  # tmpfs /dev
        SYSFS,
        {"destination": "/data", "type": "bind", "source": str(locked), "options": ["rbind", "ro"]},
    ]
    linux = {"namespaces": [{"type": "user"}, {"type": "network"}, {"type": "mount"}],
             "maskedPaths": ["/sys/firmware"]}
    config = {"root": {"path": "rootfs"}, "mounts": mounts, "linux": linux}
    plan = build_plan(config, str(bundle), no_pivot=False, cgroup_paths={}, cgroup_layout="hybrid")
    assert plan.userns

    def child() -> dict:
        # nosuid/nodev set here become *locked* once the mount is copied into the user namespace.
        m.mount("tmpfs", str(locked), "tmpfs", m.MS_NOSUID | m.MS_NODEV, "size=1m")
        if LIBC.unshare(ctypes.c_int(0x10000000 | CLONE_NEWNS | CLONE_NEWNET)) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        for name, data in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(data)
        # No proc in this container: read our mountinfo through a procfs handle (in a user
        # namespace that does not own the pid namespace this is open_procfs's open_tree fallback).
        procfd = open_procfs()
        setup_all(plan)
        mi = mounts_by_point(procfd)
        return {"data": mi["/data"]["opts"], "null": node("/dev/null"),
                "null_mount": mi["/dev/null"]["fstype"], "firmware": mi["/sys/firmware"]["fstype"]}

    out = run_in_child(child)
    assert {"ro", "nosuid", "nodev"} <= set(out["data"])
    # mknod is refused in a user namespace: the host's node is bind-mounted instead.
    assert out["null"][:3] == [stat.S_IFCHR, 1, 3] and out["null_mount"] == "devtmpfs"
    assert out["firmware"] == "tmpfs"


def _propagation() -> dict[str, str]:
    return {e.mount_point: e.optional for e in parse_mountinfo(Path("/proc/self/mountinfo").read_bytes())}


def test_without_mount_namespace_host_propagation_kept(bundle: Path) -> None:
    """No mount namespace: no rslave "/", no private parent, no self-bind; chroot instead of pivot."""
    plan = make_plan(bundle, base_mounts(), readonly=True, mntns=False)
    assert not plan.mntns

    def child() -> dict:
        # Stand-ins for the host's shared mounts: "/" and the one holding the bundle.
        m.mount(None, "/", None, m.MS_SHARED | m.MS_REC)
        before = _propagation()
        prepare_rootfs(plan)
        after = _propagation()
        changed = {p: (before[p], after[p]) for p in before if before[p] != after.get(p)}
        pivot(plan)
        finalize_rootfs(plan)
        mi = mounts_by_point()
        return {"changed": changed, "rootfs_mounted": str(bundle / "rootfs") in after,
                "proc": str(bundle / "rootfs" / "proc") in after, "cwd": os.getcwd(),
                "busybox": os.path.exists("/bin/busybox"), "chroot_proc": mi.get("/proc", {}).get("fstype"),
                "root_rw": os.access("/", os.W_OK)}

    out = run_in_child(child)
    assert out["changed"] == {}
    assert not out["rootfs_mounted"] and out["proc"]
    assert out["cwd"] == "/" and out["busybox"] and out["chroot_proc"] == "proc"
    # root.readonly would remount the host's mount holding the rootfs: ignored, as runc does
    assert out["root_rw"]


def test_readonly_dev_tmpfs_made_readonly_after_devices(bundle: Path) -> None:
    mounts = [{**b, "options": [*b["options"], "ro"]} if b["destination"] == "/dev" else b
              for b in base_mounts()]
    mounts += [{"destination": "/data", "type": "bind", "source": "hostdata", "options": ["rbind", "ro"]},
               {"destination": "/data/nested", "type": "tmpfs", "source": "tmpfs"}]
    plan = make_plan(bundle, mounts, terminal=True)
    assert [ms.destination for ms in plan.mounts if ms.late_ro] == ["/dev", "/data"]

    def child() -> dict:
        setup_all(plan)
        mi = mounts_by_point()
        errs = {}
        for path in ("/dev/newfile", "/data/newfile", "/data/nested/ok"):
            try:
                Path(path).write_text("x")
                errs[path] = 0
            except OSError as e:
                errs[path] = e.errno
        return {"dev": mi["/dev"]["opts"], "pts": mi["/dev/pts"]["fstype"], "null": node("/dev/null"),
                "console": os.path.exists("/dev/console"), "ptmx": os.readlink("/dev/ptmx"),
                "data": mi["/data"]["opts"], "errs": errs}

    out = run_in_child(child)
    assert "ro" in out["dev"] and "nosuid" in out["dev"]
    assert out["pts"] == "devpts" and out["null"][:3] == [stat.S_IFCHR, 1, 3]
    assert out["console"] and out["ptmx"] == "pts/ptmx"
    assert "ro" in out["data"]
    assert out["errs"] == {"/dev/newfile": errno.EROFS, "/data/newfile": errno.EROFS, "/data/nested/ok": 0}
    assert not (bundle / "hostdata" / "newfile").exists()


def test_tmpfs_takes_mode_of_covered_directory(bundle: Path) -> None:
    rootfs = bundle / "rootfs"
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "srv").mkdir()
    (rootfs / "srv").chmod(0o2755)
    (rootfs / "opt").mkdir()
    (rootfs / "opt").chmod(0o1777)
    (rootfs / "lnk").symlink_to("srv")  # followed inside the root, as the mount itself is
    tmpfs = {"type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
    mounts = [*base_mounts(),
              {**tmpfs, "destination": "/tmp"},
              {**tmpfs, "destination": "/lnk"},
              {**tmpfs, "destination": "/opt", "options": ["mode=0750"]},  # explicit mode wins
              {**tmpfs, "destination": "/fresh"}]  # created by us: tmpfs's own default
    plan = make_plan(bundle, mounts)

    def child() -> dict:
        setup_all(plan)
        return {p: stat.S_IMODE(os.stat(p).st_mode) for p in ("/tmp", "/srv", "/opt", "/fresh")}

    out = run_in_child(child)
    assert out == {"/tmp": 0o1777, "/srv": 0o2755, "/opt": 0o750, "/fresh": 0o1777}
