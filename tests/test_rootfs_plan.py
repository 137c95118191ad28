"""build_plan: option parsing, validation and the real engine configs (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ociruntime.errors import ConfigError
from ociruntime.linux import mount as m
from ociruntime.rootfs.plan import DEFAULT_DEVICES, build_plan, check_proc_destination, parse_options

CORPUS = Path("/work/shared/corpus/real-configs")


def _plan(config: dict, bundle: str = "/bundle", **kw):
    args = {"no_pivot": False, "cgroup_paths": {}, "cgroup_layout": "hybrid", **kw}
    return build_plan(config, bundle, **args)


def _config(mounts=None, linux=None, **extra) -> dict:
    return {"root": {"path": "rootfs"}, "mounts": mounts or [], "linux": linux or {}, **extra}


def _corpus(name: str) -> dict:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not available")
    return json.loads((CORPUS / name).read_text())


def _mount(plan, dest: str):
    return next(ms for ms in plan.mounts if ms.destination == dest)


def test_every_real_config_builds() -> None:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not available")
    files = sorted(CORPUS.glob("*.json"))
    assert files
    for path in files:
        plan = _plan(json.loads(path.read_text()), "/b")
        assert plan.rootfs.startswith("/"), path.name
        assert plan.mounts, path.name


def test_podman_default_flags() -> None:
    plan = _plan(_corpus("podman-default.json"))
    dev = _mount(plan, "/dev")
    assert dev.flags & (m.MS_NOSUID | m.MS_STRICTATIME) == m.MS_NOSUID | m.MS_STRICTATIME
    assert dev.data == "mode=755,size=65536k"
    assert dev.fstype == "tmpfs" and not dev.is_bind
    assert _mount(plan, "/sys").flags & m.MS_RDONLY
    pts = _mount(plan, "/dev/pts")
    assert pts.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    shm = _mount(plan, "/dev/shm")
    assert shm.is_bind and not shm.recursive and shm.propagation == (m.MS_PRIVATE | m.MS_REC,)
    assert shm.flags == m.MS_BIND | m.MS_NOSUID | m.MS_NOEXEC | m.MS_NODEV
    cg = _mount(plan, "/sys/fs/cgroup")
    assert cg.fstype == "cgroup" and cg.flags & m.MS_RDONLY
    assert plan.default_devices and not plan.cgroupns and not plan.userns
    assert plan.root_propagation == m.MS_SLAVE | m.MS_REC
    assert "/proc/kcore" in plan.masked_paths and "/proc/sys" in plan.readonly_paths


def test_podman_volume_propagation() -> None:
    plan = _plan(_corpus("podman-volume.json"))
    assert plan.root_propagation == m.MS_SLAVE | m.MS_REC
    hosttmp = _mount(plan, "/hosttmp")
    assert hosttmp.propagation == (m.MS_SLAVE | m.MS_REC,)
    assert hosttmp.is_bind and hosttmp.recursive and hosttmp.clear & m.MS_RDONLY
    data = _mount(plan, "/data")
    assert data.flags & m.MS_RDONLY and data.recursive


def test_podman_device_mode_drops_type_bits() -> None:
    plan = _plan(_corpus("podman-device.json"))
    fuse = next(d for d in plan.devices if d.path == "/dev/fuse")
    assert (fuse.kind, fuse.major, fuse.minor, fuse.mode) == ("c", 10, 229, 0o600)


def test_read_only_and_copyup() -> None:
    plan = _plan(_corpus("podman-read-only.json"))
    assert plan.readonly
    assert _mount(plan, "/run").copyup
    assert _plan(_corpus("podman-cgroupns-private.json")).cgroupns
    assert _plan(_corpus("podman-tty-init.json")).console


@pytest.mark.parametrize(
    ("options", "flags", "clear"),
    [
        (["ro"], m.MS_RDONLY, 0),
        (["rw"], 0, m.MS_RDONLY),
        (["ro", "rw"], 0, m.MS_RDONLY),
        (["rw", "ro"], m.MS_RDONLY, 0),
        (["nosuid", "nodev", "noexec"], m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC, 0),
        (["suid", "dev", "exec"], 0, m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC),
        (["sync", "dirsync"], m.MS_SYNCHRONOUS | m.MS_DIRSYNC, 0),
        (["async"], 0, m.MS_SYNCHRONOUS),
        (["mand", "nomand"], 0, m.MS_MANDLOCK),
        (["noatime", "nodiratime"], m.MS_NOATIME | m.MS_NODIRATIME, 0),
        (["atime", "diratime"], 0, m.MS_NOATIME | m.MS_NODIRATIME),
        (["relatime"], m.MS_RELATIME, 0),
        (["norelatime"], 0, m.MS_RELATIME),
        (["strictatime"], m.MS_STRICTATIME, 0),
        (["nostrictatime"], 0, m.MS_STRICTATIME),
        (["lazytime"], m.MS_LAZYTIME, 0),
        (["nolazytime"], 0, m.MS_LAZYTIME),
        (["nosymfollow"], m.MS_NOSYMFOLLOW, 0),
        (["symfollow"], 0, m.MS_NOSYMFOLLOW),
        (["remount"], m.MS_REMOUNT, 0),
        (["bind"], m.MS_BIND, 0),
        (["rbind"], m.MS_BIND | m.MS_REC, 0),
        (["defaults"], 0, 0),
    ],
)
def test_flag_options(options: list[str], flags: int, clear: int) -> None:
    opts = parse_options(options)
    assert (opts.flags, opts.clear) == (flags, clear)
    assert opts.data == [] and opts.propagation == []


@pytest.mark.parametrize(
    ("option", "prop"),
    [
        ("private", m.MS_PRIVATE),
        ("rprivate", m.MS_PRIVATE | m.MS_REC),
        ("shared", m.MS_SHARED),
        ("rshared", m.MS_SHARED | m.MS_REC),
        ("slave", m.MS_SLAVE),
        ("rslave", m.MS_SLAVE | m.MS_REC),
        ("unbindable", m.MS_UNBINDABLE),
        ("runbindable", m.MS_UNBINDABLE | m.MS_REC),
    ],
)
def test_propagation_options(option: str, prop: int) -> None:
    assert parse_options([option]).propagation == [prop]


@pytest.mark.parametrize(
    ("options", "attr_set", "attr_clr"),
    [
        (["rro"], m.MOUNT_ATTR_RDONLY, 0),
        (["rrw"], 0, m.MOUNT_ATTR_RDONLY),
        (["rro", "rrw"], 0, m.MOUNT_ATTR_RDONLY),
        (["rnosuid", "rnodev", "rnoexec"], m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_NOEXEC, 0),
        (["rsuid", "rdev", "rexec"], 0, m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_NOEXEC),
        (["rnodiratime"], m.MOUNT_ATTR_NODIRATIME, 0),
        (["rdiratime"], 0, m.MOUNT_ATTR_NODIRATIME),
        (["rnoatime"], m.MOUNT_ATTR_NOATIME, m.MOUNT_ATTR__ATIME),
        (["rstrictatime"], m.MOUNT_ATTR_STRICTATIME, m.MOUNT_ATTR__ATIME),
        (["rrelatime"], 0, m.MOUNT_ATTR__ATIME),
        (["ratime"], 0, m.MOUNT_ATTR_NOATIME),
        (["rnosymfollow"], m.MOUNT_ATTR_NOSYMFOLLOW, 0),
        (["rsymfollow"], 0, m.MOUNT_ATTR_NOSYMFOLLOW),
    ],
)
def test_recursive_attr_options(options: list[str], attr_set: int, attr_clr: int) -> None:
    opts = parse_options(options)
    assert (opts.attr_set, opts.attr_clr) == (attr_set, attr_clr)
    assert opts.flags == 0


def test_data_options_and_userspace_options() -> None:
    opts = parse_options(["size=1m", "mode=1777", "newinstance", "x-systemd.automount", "tmpcopyup"])
    assert opts.data == ["size=1m", "mode=1777", "newinstance"]
    assert opts.copyup


def test_relative_bind_source_is_joined_with_bundle() -> None:
    plan = _plan(_config([{"destination": "/d", "type": "bind", "source": "vol", "options": ["rbind"]}]),
                 "/srv/bundle")
    assert plan.mounts[0].source == "/srv/bundle/vol"
    assert plan.rootfs == "/srv/bundle/rootfs"


def test_bind_type_without_bind_option_and_none_type_with_rbind() -> None:
    plan = _plan(_config([
        {"destination": "/a", "type": "bind", "source": "/x"},
        {"destination": "/b", "type": "none", "source": "/y", "options": ["rbind", "ro"]},
    ]))
    a, b = plan.mounts
    assert a.is_bind and not a.recursive and a.flags == m.MS_BIND
    assert b.is_bind and b.recursive and b.fstype == "" and b.flags & m.MS_RDONLY


def test_destination_is_cleaned() -> None:
    plan = _plan(_config([{"destination": "/a/./b/../c//", "type": "tmpfs", "source": "tmpfs"}]))
    assert plan.mounts[0].destination == "/a/c"


def test_bind_of_host_dev_disables_default_devices() -> None:
    plan = _plan(_config([{"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}]))
    assert not plan.default_devices


def test_default_devices_and_override() -> None:
    plan = _plan(_config(linux={"devices": [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6},
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200},
        {"path": "/dev/fifo", "type": "p"},
    ]}))
    by_path = {d.path: d for d in plan.devices}
    assert {p for p, _, _ in DEFAULT_DEVICES} <= set(by_path)
    assert len(plan.devices) == len(DEFAULT_DEVICES) + 2
    null = by_path["/dev/null"]
    assert (null.mode, null.uid, null.gid) == (0o600, 5, 6)
    assert by_path["/dev/net/tun"].mode == 0o666
    assert by_path["/dev/fifo"].kind == "p"
    assert by_path["/dev/tty"].major == 5


def test_namespaces_and_propagation() -> None:
    plan = _plan(_config(linux={"namespaces": [{"type": "user"}, {"type": "cgroup"}],
                                "rootfsPropagation": "rshared"}), no_pivot=True)
    assert plan.userns and plan.cgroupns and plan.no_pivot
    assert plan.root_propagation == m.MS_SHARED | m.MS_REC


@pytest.mark.parametrize(
    ("dest", "fstype", "is_bind", "procfs", "ok"),
    [
        ("/proc", "proc", False, False, True),
        ("/proc", "tmpfs", False, False, False),
        ("/proc", "", True, False, False),
        ("/proc", "", True, True, True),
        ("/proc/self/attr", "tmpfs", False, False, False),
        ("/proc/cpuinfo", "", True, False, True),
        ("/proc/sys/kernel/ns_last_pid", "", True, False, True),
        ("/proc/kcore", "", True, False, False),
        ("/proc/cpuinfo", "tmpfs", False, False, False),
        ("/procfoo", "tmpfs", False, False, True),
        ("/sys", "sysfs", False, False, True),
    ],
)
def test_check_proc_destination(dest: str, fstype: str, is_bind: bool, procfs: bool, ok: bool) -> None:
    assert (check_proc_destination(dest, fstype, is_bind, procfs) is None) == ok


BAD_MOUNTS = [
    ({"destination": "rel", "type": "tmpfs", "source": "tmpfs"}, "must be absolute"),
    ({"destination": "/", "type": "tmpfs", "source": "tmpfs"}, "container root"),
    ({"destination": "/x\0y", "type": "tmpfs", "source": "tmpfs"}, "NUL"),
    ({"destination": 5, "type": "tmpfs"}, "non-empty string"),
    ({"destination": "/x", "type": "tmpfs", "options": "ro"}, "list"),
    ({"destination": "/x", "type": "tmpfs", "options": [1]}, "invalid option"),
    ({"destination": "/x", "type": "bind", "source": "/s", "options": ["idmap"]}, "idmap"),
    ({"destination": "/x", "type": "bind", "source": "/s", "options": ["ridmap"]}, "idmap"),
    ({"destination": "/x", "type": "bind", "source": "/s", "uidMappings": [{"containerID": 0}]}, "idmap"),
    ({"destination": "/x", "type": "bind", "source": "/s", "options": ["readonly"]}, "unknown mount option"),
    ({"destination": "/x", "type": "bind", "options": ["rbind"]}, "without a source"),
    ({"destination": "/x", "source": "tmpfs"}, "type is required"),
    ({"destination": "/x", "type": "bind", "source": "/s", "options": ["tmpcopyup"]}, "tmpcopyup"),
    ({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}, "not of type proc"),
    ({"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"}, "inside /proc"),
    ({"destination": "/proc/../proc/kcore", "type": "bind", "source": "/s"}, "inside /proc"),
]


@pytest.mark.parametrize(("entry", "needle"), BAD_MOUNTS)
def test_bad_mounts_are_config_errors(entry: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _plan(_config([entry]))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_error_names_the_mount() -> None:
    with pytest.raises(ConfigError, match=r"^mount /data: unknown mount option 'readonly'$"):
        _plan(_config([{"destination": "/data", "type": "bind", "source": "/s", "options": ["readonly"]}]))


BAD_DEVICES = [
    ({"path": "dev/x", "type": "c", "major": 1, "minor": 1}, "absolute"),
    ({"path": "/etc/x", "type": "c", "major": 1, "minor": 1}, "under /dev"),
    ({"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 1}, "under /dev"),
    ({"path": "/dev/x", "type": "x", "major": 1, "minor": 1}, "type"),
    ({"path": "/dev/x", "type": "c", "minor": 1}, "major is required"),
    ({"path": "/dev/x", "type": "c", "major": True, "minor": 1}, "major"),
    ({"path": "/dev/x", "type": "b", "major": -1, "minor": 1}, "major"),
    ({"path": "/dev/x", "type": "c", "major": 1, "minor": 2**32}, "minor"),
    ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "uid": 2**32}, "uid"),
    ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "gid": "0"}, "gid"),
]


@pytest.mark.parametrize(("dev", "needle"), BAD_DEVICES)
def test_bad_devices_are_config_errors(dev: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _plan(_config(linux={"devices": [dev]}))


@pytest.mark.parametrize(
    ("config", "kw", "needle"),
    [
        (_config(linux={"maskedPaths": ["proc/kcore"]}), {}, "maskedPaths"),
        (_config(linux={"readonlyPaths": ["sys"]}), {}, "readonlyPaths"),
        (_config(linux={"rootfsPropagation": "sideways"}), {}, "rootfsPropagation"),
        ({"mounts": []}, {}, "root.path"),
        (_config(), {"cgroup_layout": "v3"}, "cgroup layout"),
    ],
)
def test_other_config_errors(config: dict, kw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _plan(config, **kw)


def test_mount_namespace_listed_or_not() -> None:
    assert _plan(_config(linux={"namespaces": [{"type": "mount"}]})).mntns
    # joined by path is still a private mount namespace
    assert _plan(_config(linux={"namespaces": [{"type": "mount", "path": "/proc/1/ns/mnt"}]})).mntns
    assert not _plan(_config(linux={"namespaces": [{"type": "pid"}]})).mntns


@pytest.mark.parametrize("key", ["maskedPaths", "readonlyPaths"])
def test_sys_restrictions_need_a_mount_namespace(key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _plan(_config(linux={"namespaces": [{"type": "pid"}], key: ["/proc/kcore"]}))
    assert str(exc.value) == "unable to restrict sys entries without a private MNT namespace"
    # with one they are fine, and empty lists need none
    _plan(_config(linux={"namespaces": [{"type": "mount"}], key: ["/proc/kcore"]}))
    _plan(_config(linux={"namespaces": [], key: []}))


def test_late_readonly_marks() -> None:
    ro_tmpfs = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid"]}
    plan = _plan(_config(mounts=[
        ro_tmpfs,
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
        {"destination": "/data", "type": "bind", "source": "/src", "options": ["rbind", "ro"]},
        {"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/lone", "type": "bind", "source": "/src", "options": ["rbind", "ro"]},
        {"destination": "/datax", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/rw", "type": "tmpfs", "source": "tmpfs"},
    ]))
    late = {ms.destination for ms in plan.mounts if ms.late_ro}
    # /dev: devices and devpts go beneath; /data: /data/sub does.  Not sysfs (a user namespace
    # may refuse a writable one), not a bind with nothing beneath, not a writable mount.
    assert late == {"/dev", "/data"}
    # the flags keep "ro": the init drops it for the initial mount only
    assert _mount(plan, "/dev").flags & m.MS_RDONLY
    # a read-only tmpfs is always late (its mode or copy-up comes after mounting), even alone
    plan = _plan(_config(mounts=[{**ro_tmpfs, "destination": "/tmp"}]))
    assert plan.mounts[0].late_ro


@pytest.mark.parametrize(("bounding", "namespaces", "expected"), [
    (["CAP_SYS_ADMIN", "CAP_CHOWN"], [{"type": "mount"}], True),
    (["CAP_CHOWN"], [{"type": "mount"}], False),
    (["CAP_SYS_ADMIN"], [{"type": "mount"}, {"type": "user"}], False),  # no cgroupfs mount in a userns
    (None, [{"type": "mount"}], False),
])
def test_can_mount_cgroupfs(bounding, namespaces, expected) -> None:
    process = {"capabilities": {"bounding": bounding}} if bounding is not None else {}
    plan = _plan(_config(linux={"namespaces": namespaces}, process=process))
    assert plan.can_mount_cgroupfs is expected
