"""The rootless systemd driver: an unprivileged user's containers as scopes of its own manager.

Needs systemd as PID 1 (``make test-systemd``: the qemu guest of integration/v2guest/), and for
everything but the refusal pure cgroup v2: only there does systemd delegate a subtree to a user
manager, and runc refuses its rootless systemd driver elsewhere ("cannot use rootless systemd
cgroups manager on cgroup v1"), which is what the hybrid stage checks.

The guest runs no logind (and the fixture masks it for the module: see there), so the module
fixture starts the throw-away user's manager itself:
``user@UID.service`` and ``user-runtime-dir@UID.service`` get a runtime drop-in (no default
dependencies: they would pull in this machine's sysinit.target; the XDG_RUNTIME_DIR that
pam_systemd would have set), then a runner cgroup below ``user@UID.service``, the user's, holds
every command run as the user, as a login session's ``systemd-run --user --scope`` would: the user
manager can then move the container's init into its scope.  Teardown stops the manager and the
user's slice, removes the drop-ins and checks that no cgroup of the user's is left.

Each test looks from outside (``systemctl --user show``, the scope's directory owned by the user
and its limit files) and inside (/proc/self/cgroup, /sys/fs/cgroup), and ends with the unit, the
cgroup and the state directory gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import runtime_cmd
from test_rootless import IMAGE, TIMEOUT, Podman, User, prepared_podman, stop_everything, user  # noqa: F401 (user: the fixture)

from ociruntime.cgroups import detect_layout

pytestmark = pytest.mark.root

if not os.path.isdir("/run/systemd/system"):
    pytest.skip("needs systemd as PID 1; run make test-systemd", allow_module_level=True)

V2 = detect_layout().mode == "v2"
NOT_V2 = "a user manager gets a delegated cgroup only on pure cgroup v2 (runc refuses rootless systemd there)"
CGROUP = Path("/sys/fs/cgroup")
MiB = 1 << 20
DROPIN = "[Unit]\nDefaultDependencies=no\n"
LOGIND = "systemd-logind.service"


class SessionUser(User):
    """The user with its manager running: XDG_RUNTIME_DIR is /run/user/UID, and every command
    starts in the runner cgroup below user@UID.service."""

    runner: Path

    def run(self, argv: list[str], *, env: list[str] | None = None, timeout: float = TIMEOUT,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        # Moved by root (the user may not write the cgroup the tests run in), then setpriv.
        cmd = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.runner),
               "setpriv", "--reuid", str(self.uid), "--regid", str(self.gid), "--init-groups",
               *(env if env is not None else self.env()), *argv]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout,
                                cwd=cwd or str(self.base)).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, rc, out.read().decode(), err.read().decode())

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(["systemctl", "--user", "--no-pager", *args])

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.ctl("show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def unit_gone(self, unit: str) -> bool:
        return self.show(unit, "LoadState").get("LoadState") == "not-found"


def _until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _units(uid: int) -> list[str]:
    return [f"user@{uid}.service", f"user-runtime-dir@{uid}.service"]


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", "--no-pager", *args], capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def session(user: User) -> Iterator[SessionUser]:  # noqa: F811 (the fixture imported above)
    if not V2:
        pytest.skip(NOT_V2)
    u = SessionUser(user.name, user.base)
    uid = u.uid
    for unit in _units(uid):
        d = Path(f"/run/systemd/system/{unit}.d")
        d.mkdir(parents=True, exist_ok=True)
        env = f"[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/{uid}\n"
        (d / "zz-ocitest.conf").write_text(DROPIN + (env if unit.startswith("user@") else ""))
    manager_cg = CGROUP / f"user.slice/user-{uid}.slice/user@{uid}.service"
    try:
        # No logind: asking for it (systemd-user-runtime-dir, podman) would D-Bus-activate it, whose
        # default dependencies start sysinit.target, whose systemd-tmpfiles-setup empties /tmp
        # (the runtime under test, the tests' files) - and each such call waits 25 s.  Masked, it
        # is refused at once.
        _systemctl("mask", "--runtime", LOGIND)
        _systemctl("daemon-reload")
        p = _systemctl("start", f"user@{uid}.service")
        assert p.returncode == 0, p.stderr + _systemctl("status", f"user@{uid}.service").stdout
        u.xdg = Path(f"/run/user/{uid}")
        u.root = u.xdg / "ociruntime"
        assert _until(lambda: (u.xdg / "bus").exists() and (u.xdg / "systemd" / "private").exists(), 20)
        u.runner = manager_cg / "ocitest-runner"
        u.runner.mkdir()
        os.chown(u.runner, uid, u.gid)
        os.chown(u.runner / "cgroup.procs", uid, u.gid)
        # What the tests would otherwise make appear as they go (and the leak check report): the
        # default slice (it stays when its scopes go), the bus (socket-activated dbus.service).
        assert u.ctl("start", "user.slice").returncode == 0
        assert u.run(["busctl", "--user", "--no-pager", "status"]).returncode == 0
        assert u.ctl("is-system-running").stdout.strip() in ("running", "degraded")
        yield u
    finally:
        _session_teardown(u, manager_cg)


def _session_teardown(u: SessionUser, manager_cg: Path) -> None:
    stop_everything(u, SystemdPodman)
    for unit in _units(u.uid):
        _systemctl("stop", unit)
    _systemctl("stop", f"user-{u.uid}.slice")
    for unit in _units(u.uid):
        shutil.rmtree(f"/run/systemd/system/{unit}.d", ignore_errors=True)
    _systemctl("unmask", "--runtime", LOGIND)
    _systemctl("daemon-reload")
    assert _until(lambda: not manager_cg.parent.exists(), 20), f"{manager_cg.parent} left"


@pytest.fixture
def sess(session: SessionUser) -> Iterator[SessionUser]:
    """Per test: no container state and no scope of ours left in the user's manager."""
    yield session
    left = sorted(p.name for p in session.root.iterdir()) if session.root.is_dir() else []
    for name in left:
        session.rt("delete", "--force", name)
    assert not left, f"state left in {session.root}: {left}"


def _bundle(u: User, args: list[str], resources: dict | None = None, cgroups_path: str | None = None) -> Path:
    def mutate(cfg: dict) -> None:
        if resources is not None:
            cfg["linux"]["resources"] = resources
        if cgroups_path is not None:
            cfg["linux"]["cgroupsPath"] = cgroups_path

    return u.bundle(args, mutate)


def _id() -> str:
    return "rsd-" + os.urandom(5).hex()


def sd(u: User, *args: str, **kw: object) -> subprocess.CompletedProcess:
    return u.rt("--systemd-cgroup", *args, **kw)  # type: ignore[arg-type]


# ---- the refusal (every layout but pure v2) ---------------------------------------------------

@pytest.mark.skipif(V2, reason="pure cgroup v2: the user driver works (the tests below)")
def test_refused_without_cgroup_v2(user: User) -> None:  # noqa: F811
    cid = _id()
    b = _bundle(user, ["true"])
    p = sd(user, "create", "--bundle", str(b), cid)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines() == ["cannot use rootless systemd cgroups manager on cgroup v1"]
    assert not (user.root / cid).exists()


# ---- the user driver (pure v2) ----------------------------------------------------------------

def test_scope_in_the_user_manager_limited_and_managed(sess: SessionUser) -> None:
    u = sess
    cid = _id()
    unit = f"runc-{cid}.scope"
    res = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 42},
           "cpu": {"quota": 50_000, "period": 100_000, "shares": 2048}}
    b = _bundle(u, ["sleep", "1000"], res)
    sd(u, "create", "--bundle", str(b), cid, check=True)
    manager_cg = f"/user.slice/user-{u.uid}.slice/user@{u.uid}.service"
    cg = CGROUP / manager_cg.lstrip("/") / "user.slice" / unit
    try:
        p = u.show(unit, "ActiveState", "Slice", "Delegate", "ControlGroup", "TasksMax", "MemoryMax",
                   "CPUQuotaPerSecUSec", "CPUWeight", "DevicePolicy")
        assert (p["ActiveState"], p["Slice"], p["Delegate"], p["ControlGroup"]) == (
            "active", "user.slice", "yes", f"{manager_cg}/user.slice/{unit}")
        assert (p["TasksMax"], p["MemoryMax"], p["CPUQuotaPerSecUSec"]) == ("42", str(64 * MiB), "500ms")
        assert p["CPUWeight"] == "79" and p["DevicePolicy"] == "auto"  # no device properties
        # Outside: the scope's directory, delegated to the user, holds the limits and the init.
        assert cg.stat().st_uid == u.uid and (cg / "cgroup.procs").stat().st_uid == u.uid
        assert (cg / "memory.max").read_text().strip() == str(64 * MiB)
        assert (cg / "pids.max").read_text().strip() == "42"
        assert (cg / "cpu.max").read_text().strip() == "50000 100000"
        pid = u.state(cid)["pid"]
        assert str(pid) in (cg / "cgroup.procs").read_text().split()
        # Inside: its own cgroup namespace root, the same limits.
        sd(u, "start", cid, check=True)
        p = sd(u, "exec", cid, "sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/memory.max "
               "/sys/fs/cgroup/pids.max", check=True)
        # (No cgroup namespace in a rootless spec: the host's path, the scope.)
        assert p.stdout.split() == [f"0::{manager_cg}/user.slice/{unit}", str(64 * MiB), "42"]
        # update: the unit's property and the file.
        sd(u, "update", "--memory", str(128 * MiB), "--pids-limit", "50", cid, check=True)
        assert u.show(unit, "MemoryMax", "TasksMax") == {"MemoryMax": str(128 * MiB), "TasksMax": "50"}
        assert (cg / "memory.max").read_text().strip() == str(128 * MiB)
        assert (cg / "pids.max").read_text().strip() == "50"
        # pause/resume (the freezer of the delegated cgroup), ps, events --stats.
        sd(u, "pause", cid, check=True)
        assert "frozen 1" in (cg / "cgroup.events").read_text().splitlines()
        assert u.state(cid)["status"] == "paused"
        sd(u, "resume", cid, check=True)
        assert "frozen 0" in (cg / "cgroup.events").read_text().splitlines()
        ps = json.loads(sd(u, "ps", "--format", "json", cid, check=True).stdout)
        assert pid in ps
        stats = json.loads(sd(u, "events", "--stats", cid, check=True).stdout)
        assert stats["type"] == "stats" and stats["data"]["pids"]["current"] >= 1
        sd(u, "kill", "--all", cid, "KILL", check=True)
        assert _until(lambda: u.state(cid)["status"] == "stopped", 10)
        sd(u, "delete", cid, check=True)
    finally:
        sd(u, "delete", "--force", cid)
    assert _until(lambda: u.unit_gone(unit), 10)
    assert not cg.exists() and not (u.root / cid).exists()


def test_the_private_socket_when_the_bus_is_unreachable(sess: SessionUser) -> None:
    u = sess
    cid = _id()
    b = _bundle(u, ["sleep", "1000"], {"pids": {"limit": 10}}, cgroups_path="user.slice:pfx:" + cid)
    env = u.env(DBUS_SESSION_BUS_ADDRESS=f"unix:path={u.base}/no-bus")
    p = u.run([*runtime_cmd(), "--systemd-cgroup", "create", "--bundle", str(b), cid], env=env)
    assert p.returncode == 0, p.stderr
    unit = f"pfx-{cid}.scope"
    try:
        assert u.show(unit, "ActiveState", "TasksMax") == {"ActiveState": "active", "TasksMax": "10"}
        # Later commands reach the manager on the socket create used, whatever their environment.
        p = u.run([*runtime_cmd(), "--root", str(u.root), "--systemd-cgroup", "delete", "--force", cid],
                  env=u.env(XDG_RUNTIME_DIR=None))
        assert p.returncode == 0, p.stderr
    finally:
        sd(u, "delete", "--force", cid)
    assert _until(lambda: u.unit_gone(unit), 10)
    assert not (u.root / cid).exists()


def test_no_user_manager_is_one_line_and_leaves_nothing(sess: SessionUser) -> None:
    u = sess
    cid = _id()
    xdg = u.base / "xdg-empty"
    xdg.mkdir(mode=0o700, exist_ok=True)
    os.chown(xdg, u.uid, u.gid)
    b = _bundle(u, ["true"])
    p = u.run([*runtime_cmd(), "--systemd-cgroup", "create", "--bundle", str(b), cid],
              env=u.env(XDG_RUNTIME_DIR=str(xdg)))
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to the user's systemd over D-Bus" in lines[0], p.stderr
    assert not (xdg / "ociruntime").exists() or list((xdg / "ociruntime").iterdir()) == []
    assert u.unit_gone(f"runc-{cid}.scope")


def test_a_limit_the_user_manager_cannot_delegate_fails_cleanly(sess: SessionUser) -> None:
    # user@.service delegates cpu, memory and pids only: a cpuset is refused, and nothing stays.
    u = sess
    cid = _id()
    b = _bundle(u, ["sleep", "1000"], {"cpu": {"cpus": "0"}})
    p = sd(u, "create", "--bundle", str(b), cid)
    unit = f"runc-{cid}.scope"
    if p.returncode == 0:  # a manager delegating cpuset too
        sd(u, "delete", "--force", cid, check=True)
    else:
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert _until(lambda: u.unit_gone(unit), 10)
    assert not (u.root / cid).exists()


# ---- rootless cgroupfs in the delegated subtree ---------------------------------------------------

def test_cgroupfs_in_the_delegated_subtree(sess: SessionUser) -> None:
    # No cgroupsPath: beside the caller's own cgroup (runc's fs2 rule), which is the user's.
    u = sess
    cid = _id()
    b = _bundle(u, ["sleep", "1000"], {"memory": {"limit": 32 * MiB}, "pids": {"limit": 21}})
    u.rt("create", "--bundle", str(b), cid, check=True)
    cg = u.runner.parent / cid
    try:
        assert cg.stat().st_uid == u.uid
        assert (cg / "memory.max").read_text().strip() == str(32 * MiB)
        assert (cg / "pids.max").read_text().strip() == "21"
        pid = u.state(cid)["pid"]
        assert str(pid) in (cg / "cgroup.procs").read_text().split()
        u.rt("start", cid, check=True)
        p = u.rt("exec", cid, "cat", "/proc/self/cgroup", "/sys/fs/cgroup/pids.max", check=True)
        assert p.stdout.split() == [f"0::/{cg.relative_to(CGROUP)}", "21"]
        u.rt("update", "--pids-limit", "22", cid, check=True)
        assert (cg / "pids.max").read_text().strip() == "22"
        u.rt("pause", cid, check=True)
        assert "frozen 1" in (cg / "cgroup.events").read_text().splitlines()
        u.rt("resume", cid, check=True)
        assert pid in json.loads(u.rt("ps", "--format", "json", cid, check=True).stdout)
        u.rt("kill", "--all", cid, "KILL", check=True)
        assert _until(lambda: u.state(cid)["status"] == "stopped", 10)
        u.rt("delete", cid, check=True)
    finally:
        u.rt("delete", "--force", cid)
    assert not cg.exists() and not (u.root / cid).exists()


def test_cgroupfs_explicit_path_in_and_outside_the_subtree(sess: SessionUser) -> None:
    u = sess
    cid = _id()
    inner = u.runner.parent / "ocitest-explicit" / cid
    path = "/" + str(inner.relative_to(CGROUP))
    b = _bundle(u, ["sleep", "1000"], {"pids": {"limit": 9}}, cgroups_path=path)
    u.rt("create", "--bundle", str(b), cid, check=True)
    try:
        assert (inner / "pids.max").read_text().strip() == "9" and inner.stat().st_uid == u.uid
    finally:
        u.rt("delete", "--force", cid, check=True)
    # Both levels it made are removed.
    assert not inner.parent.exists() and not (u.root / cid).exists()
    # Outside: runc's rule, an explicit path is never skipped: its mkdir fails, nothing stays.
    b = _bundle(u, ["true"], cgroups_path=f"/ocitest-{cid}")
    p = u.rt("create", "--bundle", str(b), cid)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"mkdir /sys/fs/cgroup/ocitest-{cid}: permission denied" in p.stderr
    assert not (CGROUP / f"ocitest-{cid}").exists() and not (u.root / cid).exists()


def test_cgroupfs_outside_a_delegated_subtree(sess: SessionUser) -> None:
    # Started from root's cgroup (the test service's): no cgroup, and limits fail with runc's words.
    u = sess
    cid = _id()
    parent = CGROUP / Path(open("/proc/self/cgroup").read().strip().split("::", 1)[1].lstrip("/")).parent
    b = _bundle(u, ["true"], {"pids": {"limit": 5}})
    p = User.run(u, [*runtime_cmd(), "run", "--bundle", str(b), cid])
    assert p.returncode != 0
    assert p.stderr.strip() == ("rootless needs no limits + no cgrouppath when no permission is granted for "
                                f"cgroups: mkdir {parent / cid}: permission denied")
    b = _bundle(u, ["true"])
    p = User.run(u, [*runtime_cmd(), "run", "--bundle", str(b), cid])
    assert p.returncode == 0, p.stderr
    assert not (parent / cid).exists() and not (u.root / cid).exists()


# ---- rootless podman, --cgroup-manager systemd --------------------------------------------------

class SystemdPodman(Podman):
    cgroup_manager = "systemd"

    def extra_env(self) -> dict[str, str]:
        return {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.u.xdg}/bus"}


@pytest.fixture(scope="module")
def spodman(session: SessionUser) -> SystemdPodman:
    pm = prepared_podman(session, SystemdPodman)
    assert isinstance(pm, SystemdPodman)
    return pm


def test_podman_systemd_cgroup_manager(sess: SessionUser, spodman: SystemdPodman) -> None:
    u = sess
    manager_cg = f"/user.slice/user-{u.uid}.slice/user@{u.uid}.service"
    cid = spodman("run", "-d", "--memory", "64m", "--pids-limit", "33", IMAGE, "sleep", "1000",
                  check=True).stdout.strip()
    unit = f"libpod-{cid}.scope"
    cg = CGROUP / manager_cg.lstrip("/") / "user.slice" / unit
    try:
        # podman (uid 0 in its user namespace) had us talk to the user's manager as the user.
        p = u.show(unit, "ActiveState", "ControlGroup", "MemoryMax", "TasksMax")
        assert p == {"ActiveState": "active", "ControlGroup": f"{manager_cg}/user.slice/{unit}",
                     "MemoryMax": str(64 * MiB), "TasksMax": "33"}
        assert cg.stat().st_uid == u.uid
        assert (cg / "memory.max").read_text().strip() == str(64 * MiB)
        pid = int(spodman("inspect", "--format", "{{.State.Pid}}", cid, check=True).stdout)
        assert str(pid) in (cg / "cgroup.procs").read_text().split()
        p = spodman("exec", cid, "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", check=True)
        assert p.stdout.split() == [str(64 * MiB), "33"]
        spodman("update", "--memory", "128m", cid)  # podman 4.3 has no rootless update: best effort
        spodman("pause", cid, check=True)
        assert "frozen 1" in (cg / "cgroup.events").read_text().splitlines()
        spodman("unpause", cid, check=True)
        top = spodman("top", cid, "pid", check=True).stdout
        assert "1" in top.split()
        spodman("stop", "--time", "1", cid, check=True)
    finally:
        spodman("rm", "--force", "--time", "0", cid)
    assert _until(lambda: u.unit_gone(unit), 10)
    assert not cg.exists()
    assert not (u.xdg / "ociruntime" / cid).exists()


def test_podman_run_rm_systemd(sess: SessionUser, spodman: SystemdPodman) -> None:
    u = sess
    p = spodman("run", "--rm", IMAGE, "cat", "/proc/self/cgroup", check=True)
    assert p.stdout.split() == ["0::/"]
    p = spodman("run", "--rm", "--cgroupns", "host", IMAGE, "cat", "/proc/self/cgroup", check=True)
    (line,) = p.stdout.split()
    assert line.startswith(f"0::/user.slice/user-{u.uid}.slice/user@{u.uid}.service/user.slice/libpod-"), line
    time.sleep(0.2)
    assert list((u.xdg / "ociruntime").iterdir()) == []
