"""Bad-input table for config.json: every case must end in one ConfigError naming the field.

Each case runs the schema and then the semantic checks (as ``load_config`` does), so a rule
may live in either layer; the test pins the message fragment the user sees.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ociruntime.errors import ConfigError
from ociruntime.spec import schema, semantic

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "real-configs"

HOST = semantic.Host(
    filesystems=frozenset({"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "fuse"}),
    apparmor=False,
    selinux=False,
)

Doc = dict[str, Any]


def base_doc() -> Doc:
    return {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {
            "args": ["sh", "-c", "true"],
            "cwd": "/",
            "env": ["PATH=/bin:/usr/bin", "TERM=xterm"],
            "user": {"uid": 0, "gid": 0, "additionalGids": [1, 2]},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
        },
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
        ],
        "hooks": {"prestart": [{"path": "/bin/true", "timeout": 5}]},
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": 67108864},
                "cpu": {"period": 100000, "quota": 50000},
            },
            "cgroupsPath": "/test/box",
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def run(doc: Doc, bundle: Path, warn: Callable[[str], None] | None = None) -> None:
    schema.validate(doc, "config")
    semantic.check(doc, str(bundle), warn, HOST)


def expect_error(doc: Doc, bundle: Path, fragment: str) -> str:
    with pytest.raises(ConfigError) as info:
        run(doc, bundle)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    return message


def mutate(fn: Callable[[Doc], object]) -> Callable[[], Doc]:
    def make() -> Doc:
        doc = base_doc()
        fn(doc)
        return doc

    return make


def proc(doc: Doc) -> Doc:
    return doc["process"]


def linux(doc: Doc) -> Doc:
    return doc["linux"]


def set_ns(doc: Doc, *entries: dict[str, str]) -> None:
    linux(doc)["namespaces"] = list(entries)


def drop_ns(doc: Doc, kind: str) -> None:
    linux(doc)["namespaces"] = [n for n in linux(doc)["namespaces"] if n["type"] != kind]


def add_mount(doc: Doc, **mount: object) -> None:
    doc["mounts"].append(mount)


def sysctl(doc: Doc, key: str) -> None:
    linux(doc)["sysctl"] = {key: "1"}


BAD: list[tuple[str, Callable[[Doc], object], str]] = [
    # process
    ("no-process", lambda d: d.pop("process"), "process: is required"),
    ("args-string", lambda d: proc(d).update(args="sh"), "process.args: 'sh' is not of type 'array'"),
    ("args-empty", lambda d: proc(d).update(args=[]), "process.args: [] should be non-empty"),
    ("args0-empty", lambda d: proc(d).update(args=[""]), "process.args[0]: must not be empty"),
    ("args-nul", lambda d: proc(d)["args"].append("a\0b"), "process.args[3]: contains a nul byte"),
    ("env-nul", lambda d: proc(d)["env"].append("A=\0"), "process.env[2]: contains a nul byte"),
    ("env-no-equals", lambda d: proc(d)["env"].append("FOO"), 'process.env[2]: "FOO" is not of the form'),
    ("env-empty-name", lambda d: proc(d)["env"].append("=x"), "process.env[2]"),
    ("cwd-relative", lambda d: proc(d).update(cwd="tmp"), 'process.cwd: cwd "tmp" must be absolute'),
    ("cwd-nul", lambda d: proc(d).update(cwd="/a\0"), "process.cwd: contains a nul byte"),
    ("uid-string", lambda d: proc(d)["user"].update(uid="0"), "process.user.uid: '0' is not of type"),
    ("uid-true", lambda d: proc(d)["user"].update(uid=True), "process.user.uid: True is not of type"),
    ("uid-float", lambda d: proc(d)["user"].update(uid=1.0), "process.user.uid: 1.0 is not of type"),
    ("uid-negative", lambda d: proc(d)["user"].update(uid=-1), "process.user.uid: -1 is less than"),
    ("uid-minus-one-u32", lambda d: proc(d)["user"].update(uid=4294967295), "process.user.uid: 4294967295"),
    ("uid-2-32", lambda d: proc(d)["user"].update(uid=2**32), "process.user.uid: 4294967296"),
    ("gid-huge", lambda d: proc(d)["user"].update(gid=2**64), "process.user.gid"),
    ("gids-out", lambda d: proc(d)["user"]["additionalGids"].append(2**32), "process.user.additionalGids[2]"),
    (
        "rlimit-unknown",
        lambda d: proc(d)["rlimits"][0].update(type="RLIMIT_FOO"),
        'unknown rlimit "RLIMIT_FOO"',
    ),
    ("rlimit-lower", lambda d: proc(d)["rlimits"][0].update(type="rlimit_nofile"), "process.rlimits[0].type"),
    (
        "rlimit-soft-gt-hard",
        lambda d: proc(d)["rlimits"][0].update(soft=2048),
        "process.rlimits[0]: rlimit_nofile",
    ),
    ("rlimit-dup", lambda d: proc(d)["rlimits"].append(dict(proc(d)["rlimits"][0])), "duplicate rlimit"),
    ("oom-high", lambda d: proc(d).update(oomScoreAdj=1001), "process.oomScoreAdj: 1001 is greater than"),
    ("oom-low", lambda d: proc(d).update(oomScoreAdj=-1001), "process.oomScoreAdj: -1001 is less than"),
    ("apparmor-absent", lambda d: proc(d).update(apparmorProfile="x"), "apparmor is not enabled"),
    ("selinux-absent", lambda d: proc(d).update(selinuxLabel="a:b:c:s0"), "process.selinuxlabel: selinux"),
    ("mountlabel-absent", lambda d: linux(d).update(mountLabel="a:b:c:s0"), "linux.mountlabel: selinux"),
    # namespaces
    (
        "ns-unknown",
        lambda d: linux(d)["namespaces"].append({"type": "foo"}),
        "linux.namespaces[5].type: 'foo'",
    ),
    ("ns-dup", lambda d: linux(d)["namespaces"].append({"type": "pid"}), 'duplicate namespace type "pid"'),
    (
        "ns-path-relative",
        lambda d: set_ns(d, {"type": "network", "path": "proc/self/ns/net"}),
        "linux.namespaces[0].path: path",
    ),
    (
        "ns-path-missing",
        lambda d: set_ns(d, {"type": "network", "path": "/nonexistent/ns/net"}),
        "no such file or directory",
    ),
    (
        "ns-path-wrong-type",
        lambda d: set_ns(d, {"type": "network", "path": "/proc/self/ns/pid"}),
        "/proc/self/ns/pid is a pid namespace, not network",
    ),
    (
        "ns-path-not-ns",
        lambda d: set_ns(d, {"type": "uts", "path": "/proc/self/status"}),
        "/proc/self/status is not a namespace file",
    ),
    ("userns-no-maps", lambda d: linux(d)["namespaces"].append({"type": "user"}), "needs uid mappings"),
    (
        "userns-no-gid-maps",
        lambda d: (
            linux(d)["namespaces"].append({"type": "user"}),
            linux(d).update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
        ),
        "linux.gidmappings: a new user namespace needs gid mappings",
    ),
    (
        "maps-without-userns",
        lambda d: linux(d).update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
        "without a user namespace",
    ),
    (
        "map-overflow",
        lambda d: (
            linux(d)["namespaces"].append({"type": "user"}),
            linux(d).update(
                uidMappings=[{"containerID": 0, "hostID": 4294967000, "size": 65536}],
                gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
            ),
        ),
        "linux.uidMappings[0]: hostID 4294967000 + size 65536 overflows",
    ),
    (
        "hostname-no-uts",
        lambda d: drop_ns(d, "uts"),
        "hostname: cannot set the hostname without a private uts",
    ),
    (
        "domainname-no-uts",
        lambda d: (drop_ns(d, "uts"), d.pop("hostname"), d.update(domainname="x")),
        "domainname: cannot set",
    ),
    ("hostname-long", lambda d: d.update(hostname="h" * 65), "hostname: longer than 64 bytes"),
    ("hostname-nul", lambda d: d.update(hostname="a\0b"), "hostname: contains a nul byte"),
    (
        "timeoffsets-no-timens",
        lambda d: linux(d).update(timeOffsets={"monotonic": {"secs": 1, "nanosecs": 0}}),
        "linux.timeOffsets: time offsets need a new time namespace",
    ),
    # mounts
    (
        "mount-relative",
        lambda d: add_mount(d, destination="data", type="tmpfs"),
        'mounts[3].destination: destination "data"',
    ),
    ("mount-root", lambda d: add_mount(d, destination="/", type="tmpfs"), "mounts[3] (/): cannot mount over"),
    ("mount-root-dots", lambda d: add_mount(d, destination="/a/..", type="tmpfs"), "cannot mount over"),
    (
        "bind-missing-source",
        lambda d: add_mount(d, destination="/x", source="/nonexistent/src", options=["bind"]),
        "mounts[3] (/x): bind source /nonexistent/src: no such file or directory",
    ),
    (
        "bind-no-source",
        lambda d: add_mount(d, destination="/x", type="bind"),
        "mounts[3] (/x): a bind mount needs a source",
    ),
    (
        "mount-option-unknown",
        lambda d: add_mount(d, destination="/t", type="tmpfs", options=["nosuid", "foo"]),
        'mounts[3] (/t): unknown mount option "foo"',
    ),
    (
        "mount-option-empty-key",
        lambda d: add_mount(d, destination="/t", type="tmpfs", options=["=1"]),
        'mount option "=1" has an empty key',
    ),
    (
        "mount-type-unknown",
        lambda d: add_mount(d, destination="/t", type="foofs"),
        'unknown filesystem type "foofs"',
    ),
    (
        "mount-type-missing",
        lambda d: add_mount(d, destination="/t", source="x"),
        "mounts[3] (/t): a mount type is required",
    ),
    ("mount-type-none", lambda d: add_mount(d, destination="/t", type="none"), "a mount type is required"),
    (
        "mount-source-nul",
        lambda d: d["mounts"][0].update(source="pr\0c"),
        "mounts[0].source: contains a nul byte",
    ),
    (
        "mount-option-nul",
        lambda d: d["mounts"][1]["options"].append("a\0"),
        "mounts[1].options[4]: contains a nul",
    ),
    (
        "masked-relative",
        lambda d: linux(d)["maskedPaths"].append("proc/x"),
        'linux.maskedPaths[1]: path "proc/x"',
    ),
    ("readonly-relative", lambda d: linux(d)["readonlyPaths"].append("x"), "linux.readonlyPaths[1]"),
    # hooks
    ("hook-relative", lambda d: d["hooks"]["prestart"].append({"path": "bin/x"}), "hooks.prestart[1].path"),
    (
        "hook-timeout-zero",
        lambda d: d["hooks"]["prestart"][0].update(timeout=0),
        "hooks.prestart[0].timeout: 0",
    ),
    (
        "hook-timeout-negative",
        lambda d: d["hooks"]["prestart"][0].update(timeout=-5),
        "hooks.prestart[0].timeout",
    ),
    (
        "hook-timeout-bool",
        lambda d: d["hooks"]["prestart"][0].update(timeout=True),
        "hooks.prestart[0].timeout",
    ),
    ("hook-env", lambda d: d["hooks"]["prestart"][0].update(env=["X"]), "hooks.prestart[0].env[0]"),
    # resources
    (
        "memory-limit",
        lambda d: linux(d)["resources"]["memory"].update(limit=-2),
        "linux.resources.memory.limit: -2 is below -1",
    ),
    ("memory-swap", lambda d: linux(d)["resources"]["memory"].update(swap=-5), "linux.resources.memory.swap"),
    ("swappiness", lambda d: linux(d)["resources"]["memory"].update(swappiness=101), "swappiness: 101"),
    (
        "cpu-period-low",
        lambda d: linux(d)["resources"]["cpu"].update(period=999),
        "linux.resources.cpu.period: 999",
    ),
    ("cpu-period-high", lambda d: linux(d)["resources"]["cpu"].update(period=1000001), "cpu.period: 1000001"),
    ("cpu-quota-low", lambda d: linux(d)["resources"]["cpu"].update(quota=999), "cpu.quota: 999 must be -1"),
    ("cpu-quota-negative", lambda d: linux(d)["resources"]["cpu"].update(quota=-2), "cpu.quota: -2"),
    (
        "blkio-weight",
        lambda d: linux(d)["resources"].update(blockIO={"weight": 5}),
        "blockIO.weight: 5 is out of range",
    ),
    (
        "dev-access-empty",
        lambda d: linux(d)["resources"]["devices"].append({"allow": True, "access": ""}),
        "linux.resources.devices[1].access: cannot be empty",
    ),
    (
        "dev-cgroup-type",
        lambda d: linux(d)["resources"]["devices"].append({"allow": True, "type": "x"}),
        "linux.resources.devices[1].type: 'x' is not one of",
    ),
    (
        "unified-escape",
        lambda d: linux(d)["resources"].update(unified={"../x": "1"}),
        "must be a cgroup file name",
    ),
    ("cgroups-path-escape", lambda d: linux(d).update(cgroupsPath="/a/../../b"), "linux.cgroupsPath"),
    ("cgroups-path-dotdot", lambda d: linux(d).update(cgroupsPath=".."), "must not contain '..' components"),
    # devices
    (
        "device-type-a",
        lambda d: linux(d).update(devices=[{"path": "/dev/x", "type": "a"}]),
        "linux.devices[0].type: 'a' is not one of",
    ),
    (
        "device-filemode-mismatch",
        lambda d: linux(d).update(
            devices=[{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o60600}]
        ),
        "linux.devices[0].fileMode: file-type bits 0o60000 do not match",
    ),
    (
        "device-filemode-huge",
        lambda d: linux(d).update(
            devices=[{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 70000}]
        ),
        "linux.devices[0].fileMode: 70000 is greater than",
    ),
    (
        "device-filemode-negative",
        lambda d: linux(d).update(
            devices=[{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": -1}]
        ),
        "linux.devices[0].fileMode: -1 is less than",
    ),
    (
        "device-no-major",
        lambda d: linux(d).update(devices=[{"path": "/dev/x", "type": "c"}]),
        'major is required for a type "c" device',
    ),
    (
        "device-relative",
        lambda d: linux(d).update(devices=[{"path": "dev/x", "type": "p"}]),
        "linux.devices[0].path",
    ),
    (
        "device-uid",
        lambda d: linux(d).update(devices=[{"path": "/dev/x", "type": "p", "uid": 4294967295}]),
        "linux.devices[0].uid",
    ),
    (
        "propagation-bad",
        lambda d: linux(d).update(rootfsPropagation="rfoo"),
        "linux.rootfsPropagation: 'rfoo'",
    ),
    # seccomp
    (
        "seccomp-action",
        lambda d: linux(d).update(seccomp={"defaultAction": "SCMP_ACT_FOO"}),
        "linux.seccomp.defaultAction: 'SCMP_ACT_FOO' is not one of",
    ),
    (
        "seccomp-rule-action",
        lambda d: linux(d).update(
            seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "KILL"}]}
        ),
        "linux.seccomp.syscalls[0].action",
    ),
    # sysctls
    (
        "sysctl-core-pattern",
        lambda d: sysctl(d, "kernel.core_pattern"),
        "is not in a separate kernel namespace",
    ),
    ("sysctl-slash", lambda d: sysctl(d, "net/ipv4/ip_forward"), "is not a valid sysctl name"),
    ("sysctl-dotdot", lambda d: sysctl(d, "net..ipv4"), "is not a valid sysctl name"),
    ("sysctl-trailing-dot", lambda d: sysctl(d, "net.ipv4."), "is not a valid sysctl name"),
    (
        "sysctl-net-host",
        lambda d: (drop_ns(d, "network"), sysctl(d, "net.core.somaxconn")),
        'linux.sysctl["net.core.somaxconn"]: not allowed in the host\'s network namespace',
    ),
    (
        "sysctl-net-own-netns",
        lambda d: (
            drop_ns(d, "network"),
            linux(d)["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"}),
            sysctl(d, "net.core.somaxconn"),
        ),
        "not allowed in the host's network namespace",
    ),
    ("sysctl-ipc-host", lambda d: (drop_ns(d, "ipc"), sysctl(d, "kernel.shmmax")), "host's ipc namespace"),
    (
        "sysctl-mqueue-host",
        lambda d: (drop_ns(d, "ipc"), sysctl(d, "fs.mqueue.msg_max")),
        "host's ipc namespace",
    ),
    (
        "sysctl-domainname-no-uts",
        lambda d: (drop_ns(d, "uts"), d.pop("hostname"), sysctl(d, "kernel.domainname")),
        "needs a new uts namespace",
    ),
    ("sysctl-hostname-conflict", lambda d: sysctl(d, "kernel.hostname"), "conflicts with the hostname field"),
    # top level
    ("oci-version", lambda d: d.update(ociVersion="one"), "ociVersion: 'one' does not match"),
    ("annotation-nul", lambda d: d.update(annotations={"a": "\0"}), "annotations.a: contains a nul byte"),
]


@pytest.mark.parametrize(("fn", "fragment"), [pytest.param(f, m, id=i) for i, f, m in BAD])
def test_bad_input(bundle: Path, fn: Callable[[Doc], object], fragment: str) -> None:
    doc = base_doc()
    fn(doc)
    # fragments are written as the user sees them; messages are lower case except quoted values
    with pytest.raises(ConfigError) as info:
        run(doc, bundle)
    message = str(info.value)
    assert fragment.lower() in message.lower(), message
    assert "\n" not in message


GOOD: list[tuple[str, Callable[[Doc], object]]] = [
    ("base", lambda d: None),
    ("rslave", lambda d: linux(d).update(rootfsPropagation="rslave")),
    ("rshared", lambda d: linux(d).update(rootfsPropagation="rshared")),
    (
        "device-filemode-with-type-bits",
        lambda d: linux(d).update(
            devices=[
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8576},
                {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o60660},
                {"path": "/dev/p", "type": "p", "fileMode": 0o10644},
            ]
        ),
    ),
    (
        "mount-options-all-kinds",
        lambda d: add_mount(
            d,
            destination="/dev/pts",
            type="devpts",
            source="devpts",
            options=[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
                "rro",
                "rnosymfollow",
            ],
        ),
    ),
    (
        "bind-extensions",
        lambda d: add_mount(
            d, destination="/b", type="none", source="data", options=["rbind", "rprivate", "idmap"]
        ),
    ),
    ("bind-no-type", lambda d: add_mount(d, destination="/b", source="data", options=["bind", "tmpcopyup"])),
    ("fuse-subtype", lambda d: add_mount(d, destination="/f", type="fuse.sshfs", source="x")),
    (
        "cgroup-v1-controllers",
        lambda d: add_mount(d, destination="/c", type="cgroup", options=["memory", "ro"]),
    ),
    ("sysctl-net-new-netns", lambda d: sysctl(d, "net.ipv4.ip_forward")),
    ("sysctl-ipc", lambda d: sysctl(d, "kernel.msgmax")),
    ("sysctl-domainname", lambda d: sysctl(d, "kernel.domainname")),
    (
        "userns-with-maps",
        lambda d: (
            linux(d)["namespaces"].append({"type": "user"}),
            linux(d).update(
                uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
                gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
            ),
        ),
    ),
    (
        "join-netns",
        lambda d: (
            drop_ns(d, "network"),
            linux(d)["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"}),
        ),
    ),
    (
        "join-uts",
        lambda d: (
            drop_ns(d, "uts"),
            linux(d)["namespaces"].append({"type": "uts", "path": "/proc/self/ns/uts"}),
        ),
    ),
    (
        "timens",
        lambda d: (
            linux(d)["namespaces"].append({"type": "time"}),
            linux(d).update(timeOffsets={"boottime": {"secs": 5}}),
        ),
    ),
    ("cpu-unlimited", lambda d: linux(d)["resources"]["cpu"].update(quota=-1, period=1000)),
    ("memory-unlimited", lambda d: linux(d)["resources"]["memory"].update(limit=-1, swap=-1)),
    ("hostname-64", lambda d: d.update(hostname="h" * 64)),
    ("uid-max", lambda d: proc(d)["user"].update(uid=4294967294)),
    ("unknown-top-level", lambda d: d.update(vendorExtension={"anything": [1, 2]})),
    ("unknown-hook-stage", lambda d: d["hooks"].update(future=[{"what": 1}])),
]


@pytest.mark.parametrize("fn", [pytest.param(f, id=i) for i, f in GOOD])
def test_good_input(bundle: Path, fn: Callable[[Doc], object]) -> None:
    doc = base_doc()
    fn(doc)
    run(doc, bundle)


def test_unknown_capability_warns(bundle: Path) -> None:
    doc = base_doc()
    proc(doc)["capabilities"]["bounding"].append("CAP_FUTURE")
    warnings: list[str] = []
    run(doc, bundle, warnings.append)
    assert warnings == ['process.capabilities.bounding[1]: unknown capability "CAP_FUTURE"']


def test_device_access_repeats_accepted_and_unknown_letters_warn(bundle: Path) -> None:
    doc = base_doc()
    linux(doc)["resources"]["devices"] += [{"allow": True, "access": "rrw"},
                                           {"allow": True, "type": "c", "access": "rwx"}]
    warnings: list[str] = []
    run(doc, bundle, warnings.append)
    assert warnings == ['linux.resources.devices[2].access: unknown access "x" ignored, "rw" is used']


@pytest.mark.parametrize(("key", "lsm"), [("apparmorProfile", "apparmor"), ("selinuxLabel", "selinux"),
                                        ("mountLabel", "selinux")])
def test_lsm_labels_refused_even_when_host_has_them(bundle: Path, key: str, lsm: str) -> None:
    """This runtime applies no LSM label: accepting one would run the container unconfined."""
    doc = base_doc()
    (linux(doc) if key == "mountLabel" else proc(doc))[key] = "a:b:c:s0"
    host = semantic.Host(HOST.filesystems, apparmor=True, selinux=True)
    with pytest.raises(ConfigError, match=f"{lsm} labels are not supported by this runtime"):
        semantic.check(doc, str(bundle), None, host)


def test_relative_bind_source_resolves_against_bundle(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runtime's cwd must not matter: "data" exists in the bundle, not in the cwd.
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    run(base_doc(), bundle)
    (bundle / "data").rmdir()
    expect_error(base_doc(), bundle, f"bind source {bundle}/data: no such file or directory")


# ------------------------------------------------------------------------------------------
# root.path


def test_root_missing(tmp_path: Path) -> None:
    expect_error(base_doc(), tmp_path, f"root.path: {tmp_path}/rootfs: no such file or directory")


def test_root_required(bundle: Path) -> None:
    doc = base_doc()
    doc.pop("root")
    expect_error(doc, bundle, "root: is required")


def test_root_empty(bundle: Path) -> None:
    doc = base_doc()
    doc["root"]["path"] = ""
    expect_error(doc, bundle, "root.path: must not be empty")


def test_root_is_file(bundle: Path) -> None:
    (bundle / "rootfs").rmdir()
    (bundle / "rootfs").write_text("x")
    expect_error(base_doc(), bundle, "rootfs is not a directory")


def test_root_is_symlink(bundle: Path, tmp_path: Path) -> None:
    (bundle / "rootfs").rmdir()
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", bundle / "rootfs")
    expect_error(base_doc(), bundle, "rootfs is a symbolic link")


@pytest.mark.parametrize("path", ["/", "//", "/.", "../../../../../../../../../../.."])
def test_root_is_host_root(bundle: Path, path: str) -> None:
    doc = base_doc()
    doc["root"]["path"] = path
    expect_error(doc, bundle, "is the host's root directory")


def test_root_absolute(bundle: Path) -> None:
    doc = base_doc()
    doc["root"]["path"] = str(bundle / "rootfs")
    run(doc, bundle)


# ------------------------------------------------------------------------------------------
# namespace files


def test_namespace_type_of_proc_files() -> None:
    assert semantic.namespace_type("/proc/self/ns/net") == semantic.CLONE_FLAGS["network"]
    assert semantic.namespace_type("/proc/self/ns/mnt") == semantic.CLONE_FLAGS["mount"]


def test_namespace_path_fifo_does_not_hang(bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "nsfifo"
    os.mkfifo(fifo)
    doc = base_doc()
    set_ns(doc, {"type": "network", "path": str(fifo)})
    expect_error(doc, bundle, f"{fifo} is not a namespace file")


def test_namespace_path_regular_file(bundle: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    doc = base_doc()
    set_ns(doc, {"type": "network", "path": str(plain)})
    expect_error(doc, bundle, f"{plain} is not a namespace file")


def test_namespace_path_directory(bundle: Path) -> None:
    doc = base_doc()
    set_ns(doc, {"type": "pid", "path": "/proc/self/ns"})
    expect_error(doc, bundle, "/proc/self/ns is not a namespace file")


# ------------------------------------------------------------------------------------------
# mount option table


REQUIRED_OPTIONS = (
    "rro rrw rnosuid rsuid rnodev rdev rnoexec rexec rnoatime ratime rnodiratime rdiratime rrelatime "
    "rnorelatime rstrictatime rnostrictatime rnosymfollow rsymfollow idmap ridmap tmpcopyup "
    "rprivate rshared rslave runbindable bind rbind ro nosuid"
).split()


@pytest.mark.parametrize("option", REQUIRED_OPTIONS)
def test_required_mount_options_known(option: str) -> None:
    assert option in semantic.KNOWN_MOUNT_OPTIONS


def test_official_runc_features_mount_options_known() -> None:
    runc = REPO.parent / "shared/reference/runtime-spec-v1.3.0-schema/schema/test/features/good/runc.json"
    if not runc.is_file():
        pytest.skip("/work/shared reference not available")
    options = set(json.loads(runc.read_text())["mountOptions"])
    assert options <= semantic.KNOWN_MOUNT_OPTIONS


# ------------------------------------------------------------------------------------------
# real engine configs


def _adapt_to_host(doc: Doc, bundle: Path) -> Doc:
    """Point a captured config at this machine: our rootfs, fresh namespaces, existing sources."""
    doc = copy.deepcopy(doc)
    doc["root"]["path"] = str(bundle / "rootfs")
    for ns in doc["linux"].get("namespaces", []):
        ns.pop("path", None)
    for mount in doc.get("mounts", []):
        if mount.get("type") == "bind" or {"bind", "rbind"} & set(mount.get("options", [])):
            mount["source"] = str(bundle / "data")
    return doc


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.json")) or ["none"])
def test_real_configs_pass(bundle: Path, name: str) -> None:
    if not (CORPUS / name).is_file():
        pytest.skip("/work/shared corpus not available")
    doc = _adapt_to_host(json.loads((CORPUS / name).read_text()), bundle)
    warnings: list[str] = []
    schema.validate(doc)
    semantic.check(doc, str(bundle), warnings.append, semantic.Host.probe())
    assert warnings == []


def test_host_probe_reads_proc_filesystems() -> None:
    host = semantic.Host.probe()
    assert {"proc", "tmpfs", "sysfs"} <= host.filesystems
    assert "nodev" not in host.filesystems


# ------------------------------------------------------------------------------------------
# the semantic layer alone still refuses the values that would reach a syscall


DIRECT: list[tuple[str, Callable[[Doc], object], str]] = [
    ("uid-true", lambda d: proc(d)["user"].update(uid=True), "process.user.uid: true is not an integer id"),
    ("uid-float", lambda d: proc(d)["user"].update(uid=1.0), "process.user.uid: 1.0 is not an integer id"),
    (
        "uid-u32-max",
        lambda d: proc(d)["user"].update(uid=4294967295),
        "process.user.uid: 4294967295 is out of range",
    ),
    ("gid-negative", lambda d: proc(d)["user"].update(gid=-1), "process.user.gid: -1 is out of range"),
    ("oom", lambda d: proc(d).update(oomScoreAdj=True), "process.oomScoreAdj"),
    (
        "timeout",
        lambda d: d["hooks"]["prestart"][0].update(timeout=0),
        "hooks.prestart[0].timeout: 0 must be positive",
    ),
]


@pytest.mark.parametrize(("fn", "fragment"), [pytest.param(f, m, id=i) for i, f, m in DIRECT])
def test_semantic_without_schema(bundle: Path, fn: Callable[[Doc], object], fragment: str) -> None:
    doc = base_doc()
    fn(doc)
    with pytest.raises(ConfigError) as info:
        semantic.check(doc, str(bundle), None, HOST)
    assert fragment in str(info.value)
