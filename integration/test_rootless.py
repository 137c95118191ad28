"""Rootless: the runtime run by an unprivileged user, alone and under rootless podman.

A module fixture creates a throw-away user (``useradd --create-home``, a unique name, a
subordinate id range of its own added with ``usermod``), a private XDG_RUNTIME_DIR (0700, the
user's) and a base directory in /tmp the user can reach; every runtime command runs as that user
through ``setpriv --reuid --regid --init-groups`` with a clean environment and *no* ``--root``,
so the default state root ($XDG_RUNTIME_DIR/ociruntime) is what is tested.  Teardown removes
every container, stops podman's pause process (by its pid file), and runs ``userdel -r``, which
takes the home directory and the user's /etc/subuid and /etc/subgid lines with it (checked).

The host's facts are checked from outside (/proc/<pid>/uid_map, status, the user namespace) and
inside (the static checker, busybox); after each test: no container state, no process of the
user's but podman's pause process, and the autouse leak check (mounts, cgroups, processes).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import bundles_build, runtime_cmd
from engines import wait_for
from test_podman import _containers_conf as podman_containers_conf
from test_podman import _storage_conf as podman_storage_conf

pytestmark = pytest.mark.root

TIMEOUT = 60
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUBID_COUNT = 65536
IMAGE = "localhost/ocirootless-bb"


def _subid_lines(name: str) -> list[str]:
    out = []
    for f in ("/etc/subuid", "/etc/subgid"):
        out += [line for line in Path(f).read_text().splitlines() if line.split(":")[0] == name]
    return out


def _ranges(name: str, path: str) -> list[tuple[int, int]]:
    out = []
    for line in Path(path).read_text().splitlines():
        parts = line.split(":")
        if len(parts) == 3 and parts[0] == name:
            out.append((int(parts[1]), int(parts[2])))
    return out


class User:
    """The throw-away user, and commands run as it."""

    def __init__(self, name: str, base: Path) -> None:
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, pw.pw_uid, pw.pw_gid, pw.pw_dir
        self.base = base
        self.xdg = base / "xdg"
        self.root = self.xdg / "ociruntime"
        self.subuid = _ranges(name, "/etc/subuid")
        self.subgid = _ranges(name, "/etc/subgid")
        self.n = 0

    def env(self, **extra: str) -> list[str]:
        env = {"PATH": PATH, "HOME": self.home, "USER": self.name, "LOGNAME": self.name,
               "XDG_RUNTIME_DIR": str(self.xdg), **extra}
        return ["env", "-i", *(f"{k}={v}" for k, v in env.items() if v is not None)]

    def run(self, argv: list[str], *, env: list[str] | None = None, timeout: float = TIMEOUT,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        cmd = ["setpriv", "--reuid", str(self.uid), "--regid", str(self.gid), "--init-groups",
               *(env if env is not None else self.env()), *argv]
        # Output to files: a created container keeps our stdio, a pipe would never see EOF.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout,
                                cwd=cwd or str(self.base)).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, rc, out.read().decode(), err.read().decode())

    def rt(self, *args: str, check: bool = False, **kw: object) -> subprocess.CompletedProcess:
        p = self.run([*runtime_cmd(), *args], **kw)  # type: ignore[arg-type]
        if check and p.returncode != 0:
            raise AssertionError(f"ociruntime {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self.rt("state", cid, check=True).stdout)

    def bundle(self, args: list[str], mutate=None, rootless: bool = True) -> Path:
        """A busybox bundle (with the checker) owned by the user, maps naming the user's ids."""
        self.n += 1
        dest = self.base / f"bundle{self.n}"
        cfg_path = Path(bundles_build.build_bundle(dest, checker=CHECKER, args=args, rootless=rootless,
                                                   rootfs_cache=self.base / "cache"))
        cfg = json.loads(cfg_path.read_text())
        if rootless:
            cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": self.uid, "size": 1}]
            cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": self.gid, "size": 1}]
        if mutate is not None:
            mutate(cfg)
        cfg_path.write_text(json.dumps(cfg))
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(dest)], check=True)
        return dest

    def processes(self) -> list[int]:
        """Pids running as the user or as one of its subordinate uids."""
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    uid = os.stat(f"/proc/{name}").st_uid
                except OSError:
                    continue
                if uid == self.uid or any(s <= uid < s + c for s, c in self.subuid):
                    out.append(int(name))
        return out

    def pause_pid(self) -> int | None:
        try:
            return int((self.base / "podman" / "tmp" / "pause.pid").read_text().strip())
        except (OSError, ValueError):
            return None


CHECKER = Path(__file__).resolve().parent / "checker" / "checker"


def _runtime_reachable(user: User) -> bool:
    cmd = runtime_cmd()
    return user.run(["test", "-x", cmd[0]]).returncode == 0 and (
        len(cmd) == 1 or user.run([*cmd, "--version"]).returncode == 0)


@pytest.fixture(scope="module")
def user(checker: Path) -> Iterator[User]:
    for tool in ("useradd", "usermod", "userdel", "setpriv", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (newuidmap/newgidmap: apt-get install uidmap)")
    name = "ocirl" + uuid.uuid4().hex[:10]
    base = Path(tempfile.mkdtemp(prefix="ocirootless-", dir="/tmp"))
    base.chmod(0o755)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, timeout=TIMEOUT)
    u = None
    try:
        uid = pwd.getpwnam(name).pw_uid
        # A range of our own, far above what useradd hands out, derived from the uid.
        start = 300_000_000 + (uid % 4096) * SUBID_COUNT
        span = f"{start}-{start + SUBID_COUNT - 1}"
        subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, name], check=True,
                       timeout=TIMEOUT)
        u = User(name, base)
        u.xdg.mkdir(mode=0o700)
        os.chown(u.xdg, u.uid, u.gid)
        (base / "cache").mkdir()
        if not _runtime_reachable(u):
            pytest.skip(f"{runtime_cmd()[0]} is not reachable by an unprivileged user "
                        "(make install PREFIX=/tmp/...; OCIRUNTIME=that launcher)")
        yield u
    finally:
        if u is not None:
            _teardown(u)
        subprocess.run(["userdel", "-r", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=TIMEOUT, check=False)
        shutil.rmtree(base, ignore_errors=True)
        left = _subid_lines(name)
        if left:
            # userdel of shadow < 4.6 keeps them: remove ours so the machine is as it was.
            subprocess.run(["usermod", "--del-subuids", "0-4294967294", "--del-subgids", "0-4294967294",
                            name], check=False)
        assert not _subid_lines(name), f"subordinate id lines of {name} left"


def stop_everything(u: User, podman: type[Podman] | None = None) -> None:
    """Remove the user's podman containers (through ``podman``, default Podman) and runtime
    containers, and kill podman's pause process."""
    if (u.base / "podman" / "containers.conf").exists():
        (podman or Podman)(u)("rm", "--all", "--force", "--time", "0")
    if u.root.is_dir():
        for d in u.root.iterdir():
            u.rt("delete", "--force", d.name)
    pid = u.pause_pid()
    if pid:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _teardown(u: User) -> None:
    stop_everything(u)
    for _ in range(100):
        if not u.processes():
            break
        time.sleep(0.05)


@pytest.fixture
def rl(user: User) -> Iterator[User]:
    """Per test: afterwards nothing of the user's is left but podman's pause process."""
    yield user
    leftovers = sorted(p.name for p in user.root.iterdir()) if user.root.is_dir() else []
    for name in leftovers:
        user.rt("delete", "--force", name)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        procs = [p for p in user.processes() if p != user.pause_pid()]
        if not procs:
            break
        time.sleep(0.05)
    assert not leftovers, f"state left in {user.root}: {leftovers}"
    assert not procs, f"processes of {user.name} left: {procs}"


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        return _status(pid)["State"].startswith(("Z", "X"))
    except (FileNotFoundError, ProcessLookupError):
        return True


def _id() -> str:
    return "rl-" + uuid.uuid4().hex[:10]


# ---- the lifecycle, as the user ------------------------------------------------------------------

def test_lifecycle_default_root_and_maps(rl: User) -> None:
    b = rl.bundle(["sleep", "1000"])
    cid = _id()
    rl.rt("create", "--bundle", str(b), cid, check=True)
    st = rl.state(cid)
    assert st["status"] == "created" and st["owner"] == str(rl.uid)
    # The default root is $XDG_RUNTIME_DIR/ociruntime, 0700 with the sticky bit, the user's.
    sd = os.stat(rl.root)
    assert (sd.st_uid, sd.st_mode & 0o7777) == (rl.uid, 0o1700)
    assert (rl.root / cid / "state.json").is_file()
    assert cid in rl.rt("list", "-q", check=True).stdout.split()
    pid = st["pid"]
    # From outside: the caller's ids mapped to 0, setgroups denied, the host uid is the user's.
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(rl.uid), "1"]
    assert Path(f"/proc/{pid}/gid_map").read_text().split() == ["0", str(rl.gid), "1"]
    assert Path(f"/proc/{pid}/setgroups").read_text().strip() == "deny"
    status = _status(pid)
    assert status["Uid"].split() == [str(rl.uid)] * 4
    assert status["Gid"].split() == [str(rl.gid)] * 4
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    rl.rt("start", cid, check=True)
    assert rl.state(cid)["status"] == "running"
    p = rl.rt("exec", cid, "/bin/checker", "report", check=True)
    rep = json.loads(p.stdout)
    assert rep["uid_map"].split() == ["0", str(rl.uid), "1"]
    assert rep["no_new_privs"] == 1
    p = rl.rt("exec", cid, "sh", "-c", "id -u; id -g", check=True)
    assert p.stdout.split() == ["0", "0"]
    rl.rt("kill", cid, "KILL", check=True)
    wait_for(lambda: rl.state(cid)["status"] == "stopped", "the container to stop")
    rl.rt("delete", cid, check=True)
    assert not (rl.root / cid).exists()
    assert _gone(pid)


def test_run_exit_status_and_kill_all(rl: User) -> None:
    b = rl.bundle(["sh", "-c", "exit 7"])
    p = rl.rt("run", "--bundle", str(b), _id())
    assert p.returncode == 7, p.stderr
    b = rl.bundle(["sh", "-c", "sleep 1000 & sleep 1000"])
    cid = _id()
    rl.rt("run", "-d", "--bundle", str(b), cid, check=True)
    # No cgroup of its own on this host: kill --all reaches the init, and its pid namespace.
    rl.rt("kill", "--all", cid, "KILL", check=True)
    wait_for(lambda: rl.state(cid)["status"] == "stopped", "the container to stop")
    rl.rt("delete", cid, check=True)


# ---- security properties kept -------------------------------------------------------------------

def test_security_inside(rl: User) -> None:
    hostdir = rl.base / "hostdir"
    hostdir.mkdir()
    hostdir.chmod(0o755)  # root's: the container's root is the user on the host, not root
    (hostdir / "secret").write_text("x")
    (hostdir / "secret").chmod(0o600)

    def mutate(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/host", "type": "bind", "source": str(hostdir),
                              "options": ["rbind", "rw"]})
    b = rl.bundle(["/bin/checker", "report"], mutate)
    p = rl.rt("run", "--bundle", str(b), _id(), check=True)
    rep = json.loads(p.stdout)
    assert rep["no_new_privs"] == 1
    # Capabilities are the config's (runc spec's three), and only over the container's namespace.
    cid = _id()
    b = rl.bundle(["sleep", "1000"], mutate)
    rl.rt("run", "-d", "--bundle", str(b), cid, check=True)
    try:
        script = ("grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
                  "touch /host/new 2>&1; cat /host/secret 2>&1; "
                  "sh -c 'cat /proc/sys/vm/overcommit_memory > /proc/sys/vm/overcommit_memory' 2>&1; "
                  "mknod /dev/shm/sda b 8 0 2>&1; true")
        p = rl.rt("exec", cid, "sh", "-c", script, check=True)
        out = p.stdout
        assert "CapEff:\t0000000020000420" in out  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
        assert "NoNewPrivs:\t1" in out
        assert "touch: /host/new: Permission denied" in out
        assert "cat: can't open '/host/secret': Permission denied" in out
        assert not (hostdir / "new").exists()
        assert "/proc/sys/vm/overcommit_memory: Read-only file system" in out
        assert "mknod: /dev/shm/sda: Operation not permitted" in out
        # Masked paths: /proc/timer_list is /dev/null (reads nothing), /sys/firmware empty.
        st = json.loads(rl.rt("exec", cid, "/bin/checker", "stat", "/proc/timer_list",
                              check=True).stdout)["/proc/timer_list"]
        assert (st["type"], st["major"], st["minor"]) == ("chr", 1, 3)
        p = rl.rt("exec", cid, "ls", "-A", "/sys/firmware", check=True)
        assert p.stdout.strip() == ""
    finally:
        rl.rt("delete", "--force", cid)


def test_devices_are_binds(rl: User) -> None:
    b = rl.bundle(["sh", "-c", "grep -E ' /dev/(null|zero|tty) ' /proc/self/mountinfo; "
                               "echo hi > /dev/null && head -c 4 /dev/zero | wc -c"])
    p = rl.rt("run", "--bundle", str(b), _id(), check=True)
    lines = p.stdout.splitlines()
    assert sum(" /dev/null " in line for line in lines) == 1
    assert lines[-1].strip() == "4"


def test_sysfs_without_own_netns_is_a_readonly_bind(rl: User) -> None:
    """A sysfs mount (the rootful default config) in a user namespace without a network
    namespace of its own: the host's /sys, bound recursively read-only."""
    def mutate(cfg: dict) -> None:
        linux = cfg["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": rl.uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": rl.gid, "size": 1}]
        del linux["resources"]
        for m in cfg["mounts"]:
            if m["type"] == "devpts":
                m["options"] = [o for o in m["options"] if not o.startswith("gid=")]
        assert any(m["type"] == "sysfs" for m in cfg["mounts"])
    script = ("grep ' /sys ' /proc/self/mountinfo; touch /sys/kernel/x 2>&1; "
              "echo x > /sys/kernel/uevent_helper 2>&1; true")
    b = rl.bundle(["sh", "-c", script], mutate, rootless=False)
    p = rl.rt("run", "--bundle", str(b), _id(), check=True)
    assert " /sys ro," in p.stdout
    assert "Read-only file system" in p.stdout


def test_multiple_ranges_through_newuidmap(rl: User) -> None:
    (start, _), (gstart, _) = rl.subuid[-1], rl.subgid[-1]

    def mutate(cfg: dict) -> None:
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": rl.uid, "size": 1},
                                       {"containerID": 1, "hostID": start, "size": SUBID_COUNT}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": rl.gid, "size": 1},
                                       {"containerID": 1, "hostID": gstart, "size": SUBID_COUNT}]
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    cid = _id()
    b = rl.bundle(["sleep", "1000"], mutate)
    rl.rt("run", "-d", "--bundle", str(b), cid, check=True)
    try:
        pid = rl.state(cid)["pid"]
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == [
            "0", str(rl.uid), "1", "1", str(start), str(SUBID_COUNT)]
        assert Path(f"/proc/{pid}/gid_map").read_text().split() == [
            "0", str(rl.gid), "1", "1", str(gstart), str(SUBID_COUNT)]
        assert Path(f"/proc/{pid}/setgroups").read_text().strip() == "allow"
        status = _status(pid)
        # Container uid 1000 is host uid start + 999.
        assert status["Uid"].split() == [str(start + 999)] * 4
        assert status["Groups"].split() == [str(gstart + 9)]
        p = rl.rt("exec", "--user", "1000:1000", cid, "id", check=True)
        assert p.stdout.startswith("uid=1000(user) gid=1000(user)")
    finally:
        rl.rt("delete", "--force", cid)


@pytest.mark.parametrize(("maps", "message"), [
    ("host-root", "host ids 0-0 are neither yours"),
    ("outside", "are neither yours"),
    ("own-size-2", "are neither yours"),
])
def test_hostile_mappings_refused(rl: User, maps: str, message: str) -> None:
    def mutate(cfg: dict) -> None:
        own = {"containerID": 0, "hostID": rl.uid, "size": 1}
        top = max(s + c for s, c in rl.subuid)
        cfg["linux"]["uidMappings"] = {
            "host-root": [{"containerID": 0, "hostID": 0, "size": 1}],
            "outside": [own, {"containerID": 1, "hostID": top, "size": 10}],
            "own-size-2": [{"containerID": 0, "hostID": rl.uid, "size": 2}],
        }[maps]
    b = rl.bundle(["true"], mutate)
    p = rl.rt("run", "--bundle", str(b), _id())
    assert p.returncode == 1
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_newuidmap_itself_refuses(rl: User) -> None:
    """Our pre-check aside, the setuid helper is what enforces /etc/subuid: it refuses a range
    outside the user's (so a runtime bug could not map host root)."""
    proc = subprocess.Popen(["setpriv", "--reuid", str(rl.uid), "--regid", str(rl.gid), "--init-groups",
                             "unshare", "--user", "sleep", "30"])
    try:
        for _ in range(100):
            if os.readlink(f"/proc/{proc.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                break
            time.sleep(0.02)
        p = rl.run(["newuidmap", str(proc.pid), "0", "0", "1"])
        assert p.returncode != 0 and "not allowed" in p.stderr
        assert Path(f"/proc/{proc.pid}/uid_map").read_text() == ""
    finally:
        proc.kill()
        proc.wait()


def test_user_namespace_required(rl: User) -> None:
    b = rl.bundle(["true"], rootless=False)  # runc spec's rootful default: no user namespace
    p = rl.rt("run", "--bundle", str(b), _id())
    assert p.returncode == 1 and "rootless container requires user namespaces" in p.stderr


def test_unmapped_mount_ids_refused(rl: User) -> None:
    def mutate(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs",
                              "options": ["uid=1000"]})
    b = rl.bundle(["true"], mutate)
    p = rl.rt("run", "--bundle", str(b), _id())
    assert p.returncode == 1 and "cannot specify uid=1000 mount option" in p.stderr


# ---- cgroups: runc's rules ----------------------------------------------------------------------

def test_limits_without_cgroup_access_fail(rl: User) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    b = rl.bundle(["true"], mutate)
    p = rl.rt("run", "--bundle", str(b), _id())
    assert p.returncode == 1
    assert p.stderr.strip() == ("cannot set memory limit: container could not join or create cgroup "
                                "(rootless: no write access to it)")


def test_explicit_cgroups_path_without_access_fails(rl: User) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["cgroupsPath"] = "/ocirootless-test"
    b = rl.bundle(["true"], mutate)
    p = rl.rt("run", "--bundle", str(b), _id())
    assert p.returncode == 1 and "permission denied" in p.stderr
    assert not any(Path(d, "ocirootless-test").exists() for d in Path("/sys/fs/cgroup").iterdir())


def test_device_rules_are_not_applied_but_run(rl: User) -> None:
    """runc's example device rules (deny all) need the devices cgroup, which a rootless
    container does not have: ignored, as runc does; the host's permissions on the bound nodes
    still apply."""
    def mutate(cfg: dict) -> None:
        cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    b = rl.bundle(["true"], mutate)
    rl.rt("run", "--bundle", str(b), _id(), check=True)


def test_rootless_flag(rl: User) -> None:
    b = rl.bundle(["true"])
    p = rl.rt("--rootless", "maybe", "list")
    assert p.returncode == 1 and 'invalid --rootless value "maybe"' in p.stderr
    rl.rt("--rootless=true", "run", "--bundle", str(b), _id(), check=True)
    # false: the rootful cgroup manager, which cannot make its cgroup here.
    p = rl.rt("--rootless=false", "run", "--bundle", str(b), _id())
    assert p.returncode == 1 and "permission denied" in p.stderr


def test_no_xdg_runtime_dir(rl: User) -> None:
    b = rl.bundle(["true"])
    p = rl.rt("run", "--bundle", str(b), _id(), env=rl.env(XDG_RUNTIME_DIR=None))  # type: ignore[arg-type]
    assert p.returncode == 1
    assert "permission denied (rootless: set XDG_RUNTIME_DIR or pass --root)" in p.stderr
    own = rl.base / "own-root"
    own.mkdir()
    os.chown(own, rl.uid, rl.gid)
    rl.rt("--root", str(own), "run", "--bundle", str(b), _id(), check=True,
          env=rl.env(XDG_RUNTIME_DIR=None))  # type: ignore[arg-type]
    assert list(own.iterdir()) == []


# ---- rootless podman ----------------------------------------------------------------------------

class Podman:
    """podman as the user, private storage and configuration under the user's base dir."""

    def __init__(self, u: User) -> None:
        self.u = u
        self.tmp = u.base / "podman"
        self.runtime = runtime_cmd()[0]

    def setup(self) -> None:
        t = self.tmp
        for d in ("networks", "tmp", "volumes", "xdg-config", "xdg-data", "root", "run"):
            (t / d).mkdir(parents=True, mode=0o700)
        (t / "containers.conf").write_text(podman_containers_conf(t, self.runtime))
        (t / "storage.conf").write_text(podman_storage_conf(t))
        subprocess.run(["chown", "-R", f"{self.u.uid}:{self.u.gid}", str(t)], check=True)

    # The cgroup manager podman is told to use, and what its environment adds for it.
    cgroup_manager = "cgroupfs"

    def extra_env(self) -> dict[str, str]:
        return {}

    def __call__(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        t = self.tmp
        env = self.u.env(CONTAINERS_CONF=f"{t}/containers.conf", CONTAINERS_STORAGE_CONF=f"{t}/storage.conf",
                         XDG_CONFIG_HOME=f"{t}/xdg-config", XDG_DATA_HOME=f"{t}/xdg-data", **self.extra_env())
        p = self.u.run(["podman", "--root", f"{t}/root", "--runroot", f"{t}/run", "--storage-driver", "vfs",
                        "--events-backend", "file", "--cgroup-manager", self.cgroup_manager,
                        "--runtime", self.runtime, *args], env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def import_busybox(self, base: Path) -> subprocess.CompletedProcess:
        """Import the busybox rootfs of bundles/build.py (built under ``base``) as IMAGE."""
        img = base / "image"
        bundles_build.build_bundle(img, checker=CHECKER, rootfs_cache=base / "cache")
        tar = base / "rootfs.tar"
        subprocess.run(["tar", "-C", str(img / "rootfs"), "-cf", str(tar), "."], check=True, timeout=TIMEOUT)
        tar.chmod(0o644)
        return self("import", str(tar), IMAGE)


def prepared_podman(u: User, cls: type[Podman] = Podman) -> Podman:
    """A ``cls`` podman for ``u`` with its configuration and the busybox image (skip without podman)."""
    for tool in ("podman", "conmon", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    pm = cls(u)
    pm.setup()
    p = pm.import_busybox(u.base)
    if p.returncode != 0:
        debug = pm("--log-level", "debug", "info")
        unshare = pm("unshare", "ls", "-la", pm.runtime)
        pytest.fail(f"podman import: {p.stderr}\nunshare ls: {unshare.stdout}{unshare.stderr}\n"
                    f"info: {debug.stderr[-3000:]}")
    return pm


@pytest.fixture(scope="module")
def podman(user: User) -> Podman:
    return prepared_podman(user)


def test_podman_run_rm(rl: User, podman: Podman) -> None:
    p = podman("run", "--rm", IMAGE, "/bin/checker", "report", check=True)
    rep = json.loads(p.stdout)
    # podman's user namespace: the user as 0, then its subordinate ranges.
    lines = [line.split() for line in rep["uid_map"].strip().splitlines()]
    assert lines[0] == ["0", str(rl.uid), "1"]
    assert {(int(h), int(s)) for _c, h, s in lines[1:]} == set(rl.subuid)
    p = podman("run", "--rm", IMAGE, "sh", "-c", "exit 42")
    assert p.returncode == 42, p.stderr
    # The runtime kept its state under podman's XDG_RUNTIME_DIR (uid 0 in a user namespace,
    # USER not root: runc's rule), and nothing is left there.
    assert list((rl.xdg / "ociruntime").iterdir()) == []


def test_podman_exec(rl: User, podman: Podman) -> None:
    cid = podman("run", "-d", IMAGE, "sh", "-c", 'trap "exit 3" TERM; sleep 1000 & wait',
                 check=True).stdout.strip()
    try:
        p = podman("exec", cid, "sh", "-c", "id -u; cat /proc/1/cmdline", check=True)
        assert p.stdout.splitlines()[0] == "0"
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", cid, check=True).stdout)
        assert _status(pid)["Uid"].split() == [str(rl.uid)] * 4
        assert (rl.xdg / "ociruntime" / cid / "state.json").is_file()
        p = podman("stop", "--time", "10", cid, check=True)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", cid, check=True).stdout.strip() == "3"
    finally:
        podman("rm", "--force", "--time", "0", cid)
    assert not (rl.xdg / "ociruntime" / cid).exists()


def test_bundle_from_an_image(rl: User, rootfs_cache: Path) -> None:
    """An unprivileged `bundle create`: the layer store in the user's home, the rootfs a copy
    (no overlay mount for the user), the config in a user namespace that maps the image's user
    (1500) through the user's subordinate range; it runs, and `bundle delete` removes it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bundles_image", Path(__file__).resolve().parents[1]
                                                  / "bundles" / "image.py")
    assert spec and spec.loader
    image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(image)
    archive = image.build_image(rl.base / f"demo-{_id()}.tar", rootfs_cache=rootfs_cache)
    archive.chmod(0o644)
    work = rl.base / f"images-{_id()}"
    work.mkdir()
    os.chown(work, rl.uid, rl.gid)
    d = work / "web"
    script = "id; cat /srv/www/index.html; test -e /opt/old || echo old-gone; ls /opt/keep"
    p = rl.rt("bundle", "create", "--image", str(archive), str(d), "sh", "-c", script)
    assert p.returncode == 0, p.stderr
    meta = json.loads((d / "bundle.json").read_text())
    assert meta["rootfs"] == "copy" and meta["rootless"] and meta["store"].startswith(rl.home)
    cfg = json.loads((d / "config.json").read_text())
    (start, _), (gstart, _) = rl.subuid[0], rl.subgid[0]
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": rl.uid, "size": 1},
                                           {"containerID": 1, "hostID": start, "size": SUBID_COUNT}]
    assert cfg["linux"]["gidMappings"][1]["hostID"] == gstart
    cid = _id()
    p = rl.rt("run", "--bundle", str(d), cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("uid=1500(app) gid=1500(app)")
    assert lines[1:] == ["<h1>hello from an ociruntime bundle</h1>", "old-gone", "b"]
    refused = rl.rt("bundle", "create", "--image", str(archive), "--net", "bridge", str(work / "br"))
    assert refused.returncode != 0 and "needs root" in refused.stderr and not (work / "br").exists()
    p = rl.rt("bundle", "delete", str(d))
    assert p.returncode == 0, p.stderr
    assert not d.exists()
    listed = rl.rt("bundle", "list", "-q")
    assert listed.returncode == 0 and listed.stdout == ""
