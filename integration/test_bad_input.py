"""SECURITY.md's bad-input list through the real CLI: one clear line, exit 1, nothing left behind.

The autouse leak fixture checks mounts, cgroups, processes and the state directory after each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import new_id

pytestmark = pytest.mark.root


def _set(path: str, value: object):
    def mutate(cfg: dict) -> None:
        keys = path.split(".")
        cur = cfg
        for k in keys[:-1]:
            cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
        last = keys[-1]
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value
    return mutate


def _ns_add(entry: dict):
    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append(entry)
    return mutate


def _ns_path(nstype: str, path: str):
    def mutate(cfg: dict) -> None:
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == nstype:
                ns["path"] = path
    return mutate


def _ns_drop(nstype: str):
    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != nstype]
    return mutate


def _mount(entry: dict):
    def mutate(cfg: dict) -> None:
        cfg["mounts"].append(entry)
    return mutate


CASES = {
    "args-string": (_set("process.args", "true"), "process.args"),
    "args-empty": (_set("process.args", []), "process.args"),
    "no-process": (lambda c: c.pop("process"), "process"),
    "uid-string": (_set("process.user.uid", "0"), "uid"),
    "uid-bool": (_set("process.user.uid", True), "uid"),
    "uid-negative": (_set("process.user.uid", -1), "uid"),
    "uid-2^32": (_set("process.user.uid", 4294967296), "uid"),
    "uid-max": (_set("process.user.uid", 4294967295), "uid"),
    "nul-in-args": (_set("process.args", ["tr\0ue"]), "NUL"),
    "env-no-equals": (_set("process.env", ["NOEQUALS"]), "env"),
    "relative-cwd": (_set("process.cwd", "tmp"), "cwd"),
    "unknown-ns": (_ns_add({"type": "bogus"}), "namespaces"),
    "duplicate-ns": (_ns_add({"type": "pid"}), "pid"),
    "ns-relative-path": (_ns_path("network", "proc/1/ns/net"), "path"),
    "ns-missing-path": (_ns_path("network", "/nonexistent/ns"), "/nonexistent/ns"),
    "ns-wrong-type": (_ns_path("network", "/proc/self/ns/uts"), "network"),
    "ns-not-nsfs": (_ns_path("network", "/etc/passwd"), "/etc/passwd"),
    "userns-no-maps": (_ns_add({"type": "user"}), "mapping"),
    "maps-no-userns": (_set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
                       "user namespace"),
    "hostname-no-uts": (lambda c: (_ns_drop("uts")(c), c.__setitem__("hostname", "x")), "hostname"),
    "hostname-too-long": (_set("hostname", "h" * 65), "hostname"),
    "mount-relative-dest": (_mount({"destination": "data", "type": "tmpfs", "source": "tmpfs"}),
                            "destination"),
    "mount-dest-root": (_mount({"destination": "/", "type": "tmpfs", "source": "tmpfs"}), "/"),
    "bind-source-missing": (_mount({"destination": "/x", "type": "bind", "source": "/nonexistent-src",
                                    "options": ["bind"]}), "/nonexistent-src"),
    "mount-unknown-option": (_mount({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                                     "options": ["bogusopt"]}), "bogusopt"),
    "mount-unknown-fstype": (_mount({"destination": "/x", "type": "bogusfs", "source": "x"}), "bogusfs"),
    "hook-relative": (_set("hooks", {"prestart": [{"path": "bin/true"}]}), "path"),
    "hook-timeout-zero": (_set("hooks", {"prestart": [{"path": "/bin/true", "timeout": 0}]}), "timeout"),
    "memory-limit": (_set("linux.resources.memory", {"limit": -2}), "limit"),
    "cpu-quota": (_set("linux.resources.cpu", {"quota": 10, "period": 100000}), "quota"),
    "cpu-period": (_set("linux.resources.cpu", {"quota": 100000, "period": 10}), "period"),
    "device-access": (_set("linux.resources.devices", [{"allow": True, "access": ""}]), "access"),
    "device-type": (_set("linux.devices", [{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}]),
                    "type"),
    "cgroups-path-escape": (_set("linux.cgroupsPath", "/a/../../b"), ".."),
    "rlimit-unknown": (_set("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
                       "RLIMIT_BOGUS"),
    "rlimit-soft-gt-hard": (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]),
                            "soft"),
    "seccomp-action": (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_BOGUS"}), "defaultAction"),
    "seccomp-notify-write": (_set("linux.seccomp", {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/agent.sock",
        "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
        "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    "seccomp-agent-missing": (_set("linux.seccomp", {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/agent.sock",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
        "failed to connect with seccomp agent specified in the seccomp profile: "
        "dial unix /nonexistent/agent.sock: connect: no such file or directory"),
    "sysctl-not-namespaced": (_set("linux.sysctl", {"kernel.core_pattern": "x"}), "kernel.core_pattern"),
    "sysctl-slash": (_set("linux.sysctl", {"net/core.somaxconn": "1"}), "net/core.somaxconn"),
    "sysctl-dotdot": (_set("linux.sysctl", {"net...x": "1"}), "net...x"),
    "masked-relative": (_set("linux.maskedPaths", ["proc/kcore"]), "maskedPaths"),
    "readonly-relative": (_set("linux.readonlyPaths", ["proc/sys"]), "readonlyPaths"),
    "oom-score": (_set("process.oomScoreAdj", 1001), "oomScoreAdj"),
    "terminal-no-socket": (_set("process.terminal", True), "console socket"),
    "root-missing": (_set("root.path", "nonexistent-rootfs"), "root"),
    "root-file": (_set("root.path", "config.json"), "root"),
    "root-empty": (_set("root.path", ""), "root"),
    "root-host": (_set("root.path", "/"), "root"),
    "apparmor-absent": (_set("process.apparmorProfile", "someprofile"), "apparmor"),
    "selinux-absent": (_set("process.selinuxLabel", "system_u:system_r:container_t:s0"), "selinux"),
}


def assert_clean_failure(p, rt, fragment: str) -> None:
    err = p.stderr.decode()
    assert p.returncode == 1, (p.returncode, err)
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert fragment.lower() in err.lower(), (fragment, err)
    log = [json.loads(line) for line in rt.log.read_text().splitlines()]
    assert [e["level"] for e in log][-1] == "error" and log[-1]["msg"] == err.strip()
    if rt.root.exists():
        assert [d for d in os.listdir(rt.root) if not d.startswith(".")] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config(rt, bundle, name: str) -> None:
    mutate, fragment = CASES[name]
    p = rt("create", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert_clean_failure(p, rt, fragment)


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "config.json"), (b'{"ociVersion": "1.0.0", "process": {"args": ["true"]', "config.json"),
    (b"[1, 2]", "object"), (b'{"a": 1, "a": 2}', "duplicate"), (b'{"x": NaN}', "NaN"),
    (b"[" * 5000 + b"]" * 5000, "nest"),
])
def test_bad_json(rt, bundle, content: bytes, fragment: str) -> None:
    b = bundle(["true"])
    (b / "config.json").write_bytes(content)
    assert_clean_failure(rt("create", "--bundle", str(b), new_id()), rt, fragment)


def test_config_fifo_does_not_hang(rt, bundle) -> None:
    b = bundle(["true"])
    (b / "config.json").unlink()
    os.mkfifo(b / "config.json")
    assert_clean_failure(rt("create", "--bundle", str(b), new_id(), timeout=20), rt, "regular file")


def test_config_symlink(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["true"])
    real = tmp_path / "real.json"
    (b / "config.json").rename(real)
    (b / "config.json").symlink_to(real)
    assert_clean_failure(rt("create", "--bundle", str(b), new_id()), rt, "symbolic link")


def test_rootfs_symlink(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["true"])
    (b / "rootfs").rename(tmp_path / "realroot")
    (b / "rootfs").symlink_to(tmp_path / "realroot")
    assert_clean_failure(rt("create", "--bundle", str(b), new_id()), rt, "root")


@pytest.mark.parametrize("cid", ["../x", "a/b", ".", "..", "x" * 300])
def test_bad_ids(rt, bundle, cid: str) -> None:
    assert_clean_failure(rt("create", "--bundle", str(bundle(["true"])), cid), rt, "invalid container id")


@pytest.mark.parametrize("cmd", [["state"], ["start"], ["kill"], ["delete"]])
def test_unknown_id(rt, cmd: list[str]) -> None:
    assert_clean_failure(rt(*cmd, "no-such-container"), rt, "container does not exist")


def test_force_delete_unknown_id_succeeds_and_removes_stale_dir(rt) -> None:
    """runc's behaviour, which podman and containerd rely on after a failed create."""
    assert rt("delete", "--force", "no-such-container").returncode == 0
    stale = rt.root / "stale-one"
    stale.mkdir(parents=True)
    (stale / "exec.fifo").write_text("")
    p = rt("delete", "--force", "stale-one")
    assert p.returncode == 0 and p.stderr == b""
    assert not stale.exists()


def _held_caps() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapPrm:"))


@pytest.mark.skipif(_held_caps() >> 24 & 1, reason="this host's root holds CAP_SYS_RESOURCE")
def test_capability_the_host_lacks_fails_create(rt, bundle) -> None:
    """capset after start would be refused: create reports it (runc fails at create too)."""
    def mutate(cfg: dict) -> None:
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind] = ["CAP_KILL", "CAP_SYS_RESOURCE"]

    p = rt("create", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert_clean_failure(p, rt, "CAP_SYS_RESOURCE")
