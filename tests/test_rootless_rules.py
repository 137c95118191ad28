"""Rootless rules (ociruntime/rootless.py, cgroups/rootless.py): pure logic, no root needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ociruntime import rootless
from ociruntime.cgroups import rootless as rootless_cg
from ociruntime.cgroups.manager import FsManager
from ociruntime.cli import main as cli_main
from ociruntime.errors import ConfigError, OCIError, UsageError

INITIAL = "         0          0 4294967295\n"


@pytest.mark.parametrize(("text", "want"), [
    ("auto", None), ("", None), ("AUTO", None), ("true", True), ("1", True), ("T", True),
    ("True", True), ("false", False), ("0", False), ("F", False), ("FALSE", False),
])
def test_parse_bool_or_auto(text: str, want: bool | None) -> None:
    assert rootless.parse_bool_or_auto(text) is want


@pytest.mark.parametrize("text", ["yes", "no", "tRuE", "2", " true"])
def test_parse_bool_or_auto_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid --rootless value"):
        rootless.parse_bool_or_auto(text)


def test_in_user_namespace() -> None:
    assert not rootless.in_user_namespace(INITIAL)
    assert rootless.in_user_namespace("         0       1001          1\n")
    assert rootless.in_user_namespace("0 1001 1\n1 100000 65536\n")
    assert rootless.in_user_namespace("")  # a namespace without maps yet is not the initial one


@pytest.mark.parametrize(("euid", "userns", "env", "want"), [
    (0, False, {"XDG_RUNTIME_DIR": "/run/user/0"}, False),  # the host's root: /run/ociruntime
    (1000, False, {}, True),
    (0, True, {"USER": "alice"}, True),  # rootless podman
    (0, True, {}, True),
    (0, True, {"USER": "root"}, False),
])
def test_honour_xdg_runtime_dir(euid: int, userns: bool, env: dict, want: bool) -> None:
    assert rootless.honour_xdg_runtime_dir(euid, userns, env) is want


def test_default_root() -> None:
    xdg = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    assert rootless.default_root("/run/ociruntime", 1000, False, xdg) == ("/run/user/1000/ociruntime", True)
    # runc's fallback without XDG_RUNTIME_DIR: the root default (which the store then explains).
    assert rootless.default_root("/run/ociruntime", 1000, False, {}) == ("/run/ociruntime", False)
    assert rootless.default_root("/run/ociruntime", 0, False, xdg) == ("/run/ociruntime", False)
    assert rootless.default_root("/run/ociruntime", 0, True, {**xdg, "USER": "bob"})[0] == \
        "/run/user/1000/ociruntime"


@pytest.mark.parametrize(("flag", "euid", "userns", "want"), [
    ("auto", 0, False, False), ("auto", 1000, False, True), ("auto", 0, True, True),
    ("true", 0, False, True), ("false", 1000, False, False), ("", 0, True, True),
])
def test_rootless_cgroups(flag: str, euid: int, userns: bool, want: bool) -> None:
    assert rootless.rootless_cgroups(flag, euid, userns) is want


def test_context_root_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    ctx = cli_main._context(None, False, "auto")
    assert ctx.root == str(tmp_path / "ociruntime")
    assert ctx.seccomp_cache == str(tmp_path / "ociruntime-cache" / "seccomp")
    assert os.stat(ctx.root).st_mode & 0o7777 == 0o1700
    ctx = cli_main._context("/x/y", False, "true")  # --root wins, and is not created here
    assert ctx.root == "/x/y" and not os.path.exists("/x/y")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert cli_main._context(None, False, "auto").root == "/run/ociruntime"
    with pytest.raises(UsageError):
        cli_main._context(None, False, "sometimes")


def test_context_root_for_host_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootless, "in_user_namespace", lambda uid_map=None: False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    ctx = cli_main._context(None, False, "auto")
    assert (ctx.root, ctx.seccomp_cache) == ("/run/ociruntime", "/run/ociruntime-cache/seccomp")
    assert not (tmp_path / "ociruntime").exists()


# ---- mappings ------------------------------------------------------------------------------------

SUBUID = "alice:100000:65536\n# comment\nbob:165536:65536\n1000:300000:10\nalice:bad:1\n"


def test_parse_subid() -> None:
    assert rootless.parse_subid(SUBUID, "alice", 1000) == [(100000, 65536), (300000, 10)]
    assert rootless.parse_subid(SUBUID, "carol", 1001) == []


def _linux(uids: list, gids: list | None = None) -> dict:
    def maps(spec: list) -> list:
        return [{"containerID": c, "hostID": h, "size": s} for c, h, s in spec]
    return {"uidMappings": maps(uids), "gidMappings": maps(gids if gids is not None else uids),
            "namespaces": [{"type": "user"}]}


def test_self_map_is_written_directly_with_setgroups_denied() -> None:
    plan = rootless.plan_maps(_linux([(0, 1000, 1)]), 1000, 1000, "alice", SUBUID, SUBUID)
    assert (plan.uid_helper, plan.gid_helper, plan.deny_setgroups) == (None, None, True)


def test_ranges_need_the_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "find_helper", lambda name: f"/usr/bin/{name}")
    plan = rootless.plan_maps(_linux([(0, 1000, 1), (1, 100000, 65536)]), 1000, 1000, "alice",
                              SUBUID, SUBUID)
    assert (plan.uid_helper, plan.gid_helper, plan.deny_setgroups) == \
        ("/usr/bin/newuidmap", "/usr/bin/newgidmap", False)
    # Only the gids are ranges: uid_map written by us, setgroups left to newgidmap.
    plan = rootless.plan_maps(_linux([(0, 1000, 1)], [(0, 1000, 1), (1, 100000, 10)]), 1000, 1000,
                              "alice", SUBUID, SUBUID)
    assert (plan.uid_helper, plan.gid_helper, plan.deny_setgroups) == (None, "/usr/bin/newgidmap", False)


def test_missing_helper_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "find_helper", lambda name: None)
    with pytest.raises(ConfigError, match=r"needs newuidmap \(package uidmap\)"):
        rootless.plan_maps(_linux([(0, 1000, 1), (1, 100000, 10)]), 1000, 1000, "alice", SUBUID, SUBUID)


@pytest.mark.parametrize("uids", [
    [(0, 0, 1)],  # the host's root
    [(0, 1000, 1), (1, 165536, 10)],  # bob's range
    [(0, 1000, 2)],  # more than the caller's own id
    [(0, 1000, 1), (1, 100000, 65537)],  # one past the end of alice's range
    [(0, 1000, 1), (1, 99999, 10)],  # starts before it
    [(0, 1000, 1), (1, 100000, 0)],
])
def test_hostile_maps_refused(monkeypatch: pytest.MonkeyPatch, uids: list) -> None:
    monkeypatch.setattr(rootless, "find_helper", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ConfigError, match=r"linux\.uidMappings"):
        rootless.plan_maps(_linux(uids, [(0, 1000, 1)]), 1000, 1000, "alice", SUBUID, SUBUID)


def test_check_config() -> None:
    base = {"linux": _linux([(0, 1000, 1)]), "mounts": [], "process": {"user": {"uid": 0, "gid": 0}}}
    rootless.check_config(base, 1000, 1000)
    with pytest.raises(ConfigError, match="requires user namespaces"):
        rootless.check_config({"linux": {"namespaces": [{"type": "pid"}]}}, 1000, 1000)
    with pytest.raises(ConfigError, match="at least one UID mapping"):
        rootless.check_config({"linux": {"namespaces": [{"type": "user"}]}}, 1000, 1000)
    joined = {"linux": {"namespaces": [{"type": "user", "path": "/proc/1/ns/user"}]}}
    rootless.check_config(joined, 1000, 1000)  # joined: no mappings of ours
    mounts = [{"destination": "/dev/pts", "options": ["newinstance", "gid=5"]}]
    with pytest.raises(ConfigError, match="cannot specify gid=5 mount option"):
        rootless.check_config({**base, "mounts": mounts}, 1000, 1000)
    rootless.check_config({**base, "mounts": [{"destination": "/x", "options": ["uid=0", "gid=0"]}]},
                          1000, 1000)
    groups = {**base, "process": {"user": {"uid": 0, "gid": 0, "additionalGids": [10]}}}
    with pytest.raises(ConfigError, match="cannot set supplementary groups"):
        rootless.check_config(groups, 1000, 1000)


def test_helper_argv() -> None:
    assert rootless.helper_argv("/usr/bin/newuidmap", 42, b"0 1000 1\n1 100000 65536\n") == \
        ["/usr/bin/newuidmap", "42", "0", "1000", "1", "1", "100000", "65536"]


# ---- cgroups -------------------------------------------------------------------------------------

def _manager(tmp_path: Path) -> FsManager:
    names = {"memory": "memory", "cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct", "devices": "devices",
             "unified": "unified"}
    mounts = {n: str(tmp_path / d) for n, d in names.items()}
    paths = {n: str(tmp_path / d / "c1") for n, d in names.items()}
    return FsManager("hybrid", paths, mounts)


def test_requested_controllers() -> None:
    r = {"memory": {"limit": 1}, "cpu": {"cpus": "0", "shares": 2}, "devices": [{"allow": False}],
         "network": {"classID": 1}, "pids": {"limit": None}}
    assert rootless_cg.requested_controllers(r, v2=False) == ["memory", "cpuset", "cpu", "net_cls"]
    assert rootless_cg.requested_controllers(r, v2=True) == ["unified"]
    assert rootless_cg.requested_controllers({"devices": []}, v2=False) == []
    assert rootless_cg.requested_controllers(None, v2=False) == []


def test_prune_drops_what_we_may_not_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = _manager(tmp_path)
    monkeypatch.setattr(rootless_cg, "may_use", lambda mount, d: mount.endswith("unified"))
    dropped = rootless_cg.prune(mgr, {"devices": [{"allow": False, "access": "rwm"}]}, explicit_path=False)
    assert sorted(dropped) == ["cpu", "cpuacct", "devices", "memory"]
    assert dropped["cpu"] == str(tmp_path / "cpu,cpuacct")
    assert list(mgr.paths) == ["unified"] and list(mgr.mounts) == ["unified"]


def test_prune_refuses_limits_it_cannot_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless_cg, "may_use", lambda mount, d: False)
    with pytest.raises(ConfigError, match=r"^cannot set memory limit: container could not join or create"):
        rootless_cg.prune(_manager(tmp_path), {"memory": {"limit": 1 << 20}}, explicit_path=False)
    # An explicit cgroupsPath keeps everything: the mkdir then fails with its own error (runc).
    mgr = _manager(tmp_path)
    assert rootless_cg.prune(mgr, {"memory": {"limit": 1 << 20}}, explicit_path=True) == {}
    assert "memory" in mgr.paths


def test_prune_keeps_a_delegated_subtree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless_cg, "may_use", lambda mount, d: True)
    mgr = FsManager("v2", {"unified": str(tmp_path / "user.slice/c1")}, {"unified": str(tmp_path)})
    assert rootless_cg.prune(mgr, {"memory": {"limit": 1 << 20}, "pids": {"limit": 10}}, False) == {}
    assert mgr.paths == {"unified": str(tmp_path / "user.slice/c1")}


def test_may_use_checks_the_nearest_existing_level(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert rootless_cg.may_use(str(tmp_path), str(tmp_path / "a" / "b" / "c"))
    (tmp_path / "a" / "cgroup.procs").write_text("")
    (tmp_path / "a" / "cgroup.procs").chmod(0o644)
    assert rootless_cg.may_use(str(tmp_path), str(tmp_path / "a")) is os.access(
        tmp_path / "a" / "cgroup.procs", os.W_OK)
    assert not rootless_cg.may_use(str(tmp_path / "missing"), str(tmp_path / "missing" / "x"))


def test_empty_manager_is_harmless(tmp_path: Path) -> None:
    mgr = FsManager("hybrid", {}, {})
    mgr.create()
    mgr.join(os.getpid())
    assert mgr.pids() == []
    assert not mgr.exists()
    mgr.destroy()
    with pytest.raises(OCIError):
        mgr.freeze()


def test_prune_on_v2_refuses_with_runcs_fs2_wording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not delegated (the caller's parent cgroup is root's): runc's fs2 message, naming the directory.
    monkeypatch.setattr(rootless_cg, "may_use", lambda mount, d: False)
    leaf = str(tmp_path / "system.slice/c1")
    mgr = FsManager("v2", {"unified": leaf}, {"unified": str(tmp_path)})
    with pytest.raises(ConfigError) as ei:
        rootless_cg.prune(mgr, {"pids": {"limit": 10}}, explicit_path=False)
    assert str(ei.value) == ("rootless needs no limits + no cgrouppath when no permission is granted for "
                             f"cgroups: mkdir {leaf}: permission denied")
    # Without limits the container simply runs in the caller's cgroup.
    mgr = FsManager("v2", {"unified": leaf}, {"unified": str(tmp_path)})
    assert rootless_cg.prune(mgr, {"devices": []}, explicit_path=False) == {"unified": str(tmp_path)}
    assert mgr.paths == {}


def test_no_cgroup_on_v2_refuses_device_rules_cleanly() -> None:
    # A rootless container in no cgroup of its own on pure v2: an OCIError its caller ignores
    # (create's _try_device_rules), never a crash.
    mgr = FsManager("v2", {}, {})
    with pytest.raises(ConfigError, match="the container has no cgroup of its own"):
        mgr.set_resources({"devices": [{"allow": False, "access": "rwm"}]})
    mgr.set_resources({"devices": [{"allow": True, "access": "rwm"}]}, skip_devices=True)
