"""Docker Engine 20.10 (Debian's docker.io: dockerd, its managed containerd, the runc v2 shim)
driving the runtime under test.

A private dockerd runs for the module, everything under one temporary directory: ``--data-root``,
``--exec-root``, its API socket (``-H unix://``), pid file and ``--config-file`` (which registers
the runtime under ``runtimes`` and makes it the ``default-runtime``, and moves the trust key out
of /etc/docker).  The containerd that dockerd starts and stops itself takes its config, root and
state from those two directories.  No network is touched: ``--bridge=none``, no iptables or
ip6tables rules, no IP masquerading or forwarding sysctl, no userland proxy, and every container
runs with ``--network none``; the fixture checks that no interface appeared in the host's network
namespace.  cgroupfs driver (cgroup parent ``/docker``), overlay2 storage (vfs if overlay2 will
not start).  The client's ``DOCKER_CONFIG`` and ``HOME`` point into the same directory.  The image
is the busybox rootfs of bundles/build.py with the checker, ``docker import``-ed as ``ocitest-bb``.

dockerd mounts its data root on itself (shared propagation) at start and unmounts it at shutdown;
that mount and the daemon exist before the autouse leak check takes its snapshot.  Containers'
overlay and network-namespace mounts are dockerd's, their cgroups ``/docker/<id>`` the runtime's:
all of them stay visible to that check.  The ``docker`` fixture removes every container and the
empty ``/docker`` parent cgroups (runc leaves them) before the check runs.  The runtime's state
lives where dockerd's shim puts it: ``<exec-root>/runtime-runc/moby`` (whatever the runtime's name).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import bundles_build, run_in_pty
from engines import CGROUP_ROOT, host_cgroup, launcher, mounts_under, proc_field, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists(),
                       reason="cgroup v1 controllers (the hybrid host layout) are checked here"),
]

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"  # Debian's docker.io installs the daemon in sbin
IMAGE = "ocitest-bb:latest"
TIMEOUT = 60
# Daemon PATH: Debian's containerd, shim and docker-init, nothing from /usr/local.
DAEMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Detached containers: sh as init says it started, answers SIGTERM with 3 and SIGUSR1 with 10, and
# waits on a child that `top` can see.
LOOP = ["sh", "-c", 'echo started; trap "exit 3" TERM; trap "exit 10" USR1; sleep 1000 & wait']
V1_HIERARCHIES = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd")
# Docker's default capability set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DEFAULT_CAPS = "00000000a80425fb"


def _interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _ip_forward() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _remove_parent_cgroups() -> None:
    """rmdir the ``/docker`` parent in every hierarchy, only where it is empty (a container's
    cgroup left in it is the runtime's leak, for the leak check to report)."""
    for top in CGROUP_ROOT.iterdir():
        try:
            (top / "docker").rmdir()
        except OSError:
            continue


def _ours(pid: int, tmp: Path) -> bool:
    """Whether ``pid`` is a process started for this module (its command line names ``tmp``)."""
    try:
        return str(tmp).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        return proc_field(pid, "State") == "Z"
    except (OSError, AssertionError):
        return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``timeout`` seconds, wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, TIMEOUT)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # our child: reap it; otherwise ECHILD
            except ChildProcessError:
                pass
            if _gone(pid):
                return
            time.sleep(0.05)


class Docker:
    """The docker client talking to the private dockerd."""

    def __init__(self, tmp: Path, runtime: str) -> None:
        self.tmp = tmp
        self.runtime = runtime
        self.sock = tmp / "docker.sock"
        self.data_root = tmp / "data"
        self.exec_root = tmp / "exec"
        self.driver = "overlay2"
        self.mounts_at_start: set[str] = set()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_CONFIG=str(tmp / "client"), HOME=str(tmp / "home"))
        self.base = [DOCKER, "-H", f"unix://{self.sock}"]

    def __call__(self, *args: str, check: bool = False,
                 timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        p = subprocess.run([*self.base, *args], env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def run_rm(self, *args: str) -> subprocess.CompletedProcess:
        return self("run", "--rm", "--network", "none", *args)

    def detached(self, *opts: str, args: list[str] = LOOP) -> str:
        cid = self("run", "-d", "--network", "none", *opts, IMAGE, *args, check=True).stdout.strip()
        if args is LOOP:
            wait_for(lambda: self("logs", cid).stdout.startswith("started"), "the init to set its traps",
                     timeout=TIMEOUT)
        return cid

    def inspect(self, cid: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, cid, check=True).stdout.strip()

    def pid(self, cid: str) -> int:
        return int(self.inspect(cid, "{{.State.Pid}}"))

    def runtime_root(self) -> Path:
        """The ``--root`` dockerd's shim gives the runtime: ``<exec-root>/runtime-<name>/moby``."""
        roots = sorted(self.exec_root.glob("runtime-*/moby"))
        assert len(roots) == 1, roots
        return roots[0]

    def remove_everything(self) -> None:
        ids = self("ps", "--all", "--quiet", "--no-trunc").stdout.split()
        if ids:
            self("rm", "--force", *ids)


def _daemon_json(dk: Docker) -> str:
    return json.dumps({
        "runtimes": {"ociruntime": {"path": dk.runtime}},
        "default-runtime": "ociruntime",
        "deprecated-key-path": str(dk.tmp / "key.json"),  # not /etc/docker/key.json
        "registry-mirrors": [],
        "insecure-registries": [],
        "log-driver": "json-file",
    }, indent=2)


def _start_dockerd(dk: Docker, log: Path) -> subprocess.Popen:
    flags = ["--config-file", str(dk.tmp / "daemon.json"), "--data-root", str(dk.data_root),
             "--exec-root", str(dk.exec_root), "-H", f"unix://{dk.sock}",
             "--pidfile", str(dk.tmp / "docker.pid"),
             "--storage-driver", dk.driver, "--exec-opt", "native.cgroupdriver=cgroupfs",
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--ip-forward=false", "--userland-proxy=false"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "NOTIFY_SOCKET"))}
    env["PATH"] = DAEMON_PATH
    with open(log, "ab") as out:
        daemon = subprocess.Popen([DOCKERD, *flags], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  env=env)
    deadline = time.monotonic() + TIMEOUT
    while dk("version", "--format", "{{.Server.Version}}", timeout=10).returncode != 0:
        if daemon.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return daemon


def _stop_dockerd(dk: Docker, daemon: subprocess.Popen) -> None:
    """Stop dockerd, then whatever of ours outlived it (its managed containerd, shims)."""
    if daemon.poll() is None:
        _terminate(daemon.pid, TIMEOUT / 2)
    daemon.wait(timeout=TIMEOUT)
    try:
        containerd = int((dk.exec_root / "containerd" / "containerd.pid").read_text().strip())
    except (OSError, ValueError):
        containerd = 0
    if containerd and _ours(containerd, dk.tmp):
        _terminate(containerd, 10)
    for name in os.listdir("/proc"):  # shims name the containerd socket under tmp
        if name.isdigit() and int(name) != os.getpid() and _ours(int(name), dk.tmp):
            _terminate(int(name), 10)


@pytest.fixture(scope="module")
def docker_env(tmp_path_factory: pytest.TempPathFactory, rootfs_cache: Path,
               checker: Path) -> Iterator[Docker]:
    for tool in (DOCKER, DOCKERD, "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2"):
        if not Path(tool).exists():
            pytest.skip(f"{tool} is not installed (make deps)")
    tmp = tmp_path_factory.mktemp("docker")
    interfaces, ip_forward = _interfaces(), _ip_forward()
    dk = Docker(tmp, launcher(tmp))
    (tmp / "daemon.json").write_text(_daemon_json(dk))
    for d in ("client", "home"):
        (tmp / d).mkdir(mode=0o700)
    log = tmp / "dockerd.log"
    daemon = _start_dockerd(dk, log)
    try:
        if daemon.poll() is not None:  # overlay2 not usable here: the copying driver then
            _stop_dockerd(dk, daemon)
            for point in mounts_under(tmp):
                subprocess.run(["umount", point], timeout=TIMEOUT, check=False)
            dk.driver = "vfs"
            daemon = _start_dockerd(dk, log)
        if daemon.poll() is not None or dk("version").returncode != 0:
            raise AssertionError(f"dockerd did not start: {log.read_text()[-3000:]}")
        bundles_build.build_bundle(tmp / "image", checker=checker, rootfs_cache=rootfs_cache)
        subprocess.run(["tar", "--numeric-owner", "-C", str(tmp / "image" / "rootfs"), "-cf",
                        str(tmp / "rootfs.tar"), "."], check=True, timeout=TIMEOUT)
        dk("import", str(tmp / "rootfs.tar"), IMAGE, check=True)
        shutil.rmtree(tmp / "image")
        dk.mounts_at_start = set(mounts_under(tmp))
        yield dk
    finally:
        if daemon.poll() is None:
            dk.remove_everything()
        _stop_dockerd(dk, daemon)
        for point in mounts_under(tmp):
            subprocess.run(["umount", point], timeout=TIMEOUT, check=False)
        _remove_parent_cgroups()
        shutil.rmtree(tmp, ignore_errors=True)
        assert _interfaces() == interfaces, f"network interfaces appeared: {_interfaces() - interfaces}"
        assert _ip_forward() == ip_forward, "dockerd changed net.ipv4.ip_forward"


@pytest.fixture
def docker(docker_env: Docker) -> Iterator[Docker]:
    """Requested by each test: set up after the autouse leak check, so torn down before it."""
    yield docker_env
    docker_env.remove_everything()
    _remove_parent_cgroups()


def container_cgroups(cid: str) -> list[Path]:
    return [CGROUP_ROOT / h / "docker" / cid for h in V1_HIERARCHIES if (CGROUP_ROOT / h).is_dir()]


# ---- docker run --rm ----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [0, 7])
def test_run_output_and_exit_status(docker: Docker, status: int) -> None:
    p = docker.run_rm(IMAGE, "sh", "-c", f"echo out; echo err >&2; exit {status}")
    assert (p.returncode, p.stdout, p.stderr) == (status, "out\n", "err\n")
    assert docker("ps", "--all", "--quiet").stdout == ""


def test_run_missing_command_is_127(docker: Docker) -> None:
    p = docker.run_rm(IMAGE, "no-such-command")
    assert p.returncode == 127, p.stderr
    assert 'exec: "no-such-command": executable file not found in $PATH' in p.stderr


def test_run_home_and_hostname(docker: Docker, tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    p = docker.run_rm("--cidfile", str(cidfile), IMAGE,
                      "sh", "-c", 'echo "$HOME"; hostname; cat /etc/hostname')
    assert p.returncode == 0, p.stderr
    # The image sets no HOME: root's entry in the container's /etc/passwd gives it.
    short = cidfile.read_text().strip()[:12]
    assert p.stdout.split() == ["/root", short, short]
    p = docker.run_rm("--hostname", "ocihost", "-u", "4242", IMAGE,
                      "sh", "-c", 'echo "$HOME"; id -u; hostname')
    # No passwd entry for the user: HOME is /.
    assert (p.returncode, p.stdout.split()) == (0, ["/", "4242", "ocihost"]), p.stderr
    p = docker.run_rm("-e", "HOME=/somewhere", IMAGE, "sh", "-c", 'echo "$HOME"')
    assert p.stdout.split() == ["/somewhere"], p.stderr


def _status_fields(text: str) -> dict[str, str]:
    return {line.split(":")[0]: line.split()[1] for line in text.splitlines() if ":" in line}


def test_run_capabilities(docker: Docker) -> None:
    probe = ["grep", "-E", "^(Cap...|Seccomp|NoNewPrivs):", "/proc/self/status"]
    p = docker.run_rm(IMAGE, *probe)
    assert p.returncode == 0, p.stderr
    assert _status_fields(p.stdout) == {"CapInh": "0" * 16, "CapPrm": DEFAULT_CAPS, "CapEff": DEFAULT_CAPS,
                                        "CapBnd": DEFAULT_CAPS, "CapAmb": "0" * 16, "NoNewPrivs": "0",
                                        "Seccomp": "2"}
    p = docker.run_rm("-u", "1000:1000", "--cap-drop", "NET_RAW", IMAGE, *probe)
    got = _status_fields(p.stdout)
    assert (got["CapEff"], got["CapPrm"]) == ("0" * 16, "0" * 16), p.stderr
    assert int(got["CapBnd"], 16) == int(DEFAULT_CAPS, 16) & ~(1 << 13)


# ---- detached containers and exec ------------------------------------------------------------

def test_exec(docker: Docker) -> None:
    cid = docker.detached()
    p = docker("exec", cid, "sh", "-c", "echo out; echo err >&2; echo $$; exit 4")
    assert p.returncode == 4, p.stderr
    out = p.stdout.split()
    assert out[0] == "out" and out[1] != "1" and p.stderr == "err\n"
    p = docker("exec", "-e", "FOO=bar", "-u", "1000:1000", "-w", "/tmp", cid,
               "sh", "-c", 'id -u; id -g; pwd; echo "$FOO"', check=True)
    assert p.stdout.split() == ["1000", "1000", "/tmp", "bar"]
    p = docker("exec", "-u", "user", cid, "sh", "-c", 'id -u; echo "$HOME"; cat /proc/1/cmdline', check=True)
    assert p.stdout.split()[:2] == ["1000", "/home/user"] and p.stdout.split()[2].startswith("sh")
    p = docker("exec", cid, "no-such-command")
    # docker 20.10 prints the runtime's error on stdout for exec
    assert p.returncode == 126, (p.stdout, p.stderr)
    assert 'exec: "no-such-command": executable file not found in $PATH' in p.stdout + p.stderr


def test_exec_tty(docker: Docker) -> None:
    cid = docker.detached()
    cmd = ["env", f"DOCKER_CONFIG={docker.env['DOCKER_CONFIG']}", f"HOME={docker.env['HOME']}", *docker.base,
           "exec", "-it", cid, "sh", "-c", "tty; read line; echo got:$line; exit 6"]
    code, out = run_in_pty(cmd, b"/dev/pts/", b"hello\r", timeout=TIMEOUT)
    assert code == 6, out
    assert b"got:hello" in out


def test_top_and_logs(docker: Docker) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    procs = host_cgroup(pid, "pids") / "cgroup.procs"
    assert procs.parent == CGROUP_ROOT / "pids" / "docker" / cid
    wait_for(lambda: len(procs.read_text().split()) == 2, "sh and its sleep", timeout=TIMEOUT)
    top = docker("top", cid, "-o", "pid,args", check=True).stdout
    rows = [line.split(None, 1) for line in top.splitlines()[1:]]
    # docker top shows host pids: exactly those in the container's cgroup.
    assert sorted(int(r[0]) for r in rows) == sorted(int(x) for x in procs.read_text().split())
    assert [str(pid), LOOP[0] + " -c " + LOOP[2]] in [[r[0], r[1].strip()] for r in rows]
    assert any(r[1].strip() == "sleep 1000" for r in rows)
    docker("exec", cid, "sh", "-c", "echo via-exec > /proc/1/fd/1", check=True)
    p = docker("logs", cid, check=True)
    assert (p.stdout, p.stderr) == ("started\nvia-exec\n", "")


# ---- stop, restart, kill -------------------------------------------------------------------------

def test_stop_trapping_init(docker: Docker) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    start = time.monotonic()
    docker("stop", "-t", "20", cid, check=True)
    assert time.monotonic() - start < 10  # answered SIGTERM, no SIGKILL after 20 s
    assert docker.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 3"
    assert _gone(pid)


def test_stop_non_trapping_init(docker: Docker) -> None:
    # sleep as pid 1 has no SIGTERM handler: the kernel drops the signal, docker kills after 1 s.
    cid = docker.detached(args=["sleep", "1000"])
    start = time.monotonic()
    docker("stop", "-t", "1", cid, check=True)
    assert time.monotonic() - start >= 1
    state = docker.inspect(cid, "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}")
    assert state == "exited 137 false"


def test_restart(docker: Docker) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    started = docker.inspect(cid, "{{.State.StartedAt}}")
    docker("restart", "-t", "20", cid, check=True)
    assert docker.inspect(cid, "{{.State.Status}}") == "running"
    new_pid = docker.pid(cid)
    assert new_pid != pid and Path(f"/proc/{new_pid}").exists()
    assert docker.inspect(cid, "{{.State.StartedAt}}") != started
    assert host_cgroup(new_pid, "memory") == CGROUP_ROOT / "memory" / "docker" / cid
    assert (docker.runtime_root() / cid).is_dir()
    assert docker("exec", cid, "cat", "/proc/1/cmdline", check=True).stdout.startswith("sh")
    wait_for(lambda: docker("logs", cid).stdout == "started\nstarted\n", "the second init's output")


@pytest.mark.parametrize(("signal_name", "status"), [("USR1", 10), ("TERM", 3), ("KILL", 137)])
def test_kill_signal(docker: Docker, signal_name: str, status: int) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    docker("kill", "-s", signal_name, cid, check=True)
    assert docker("wait", cid, check=True).stdout.strip() == str(status)
    assert docker.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == f"exited {status}"
    assert _gone(pid)


# ---- update and pause ----------------------------------------------------------------------------

LIMIT_FILES = ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
               "/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/pids/pids.max")


def test_update(docker: Docker) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    memory, cpu, pids = (host_cgroup(pid, c) for c in ("memory", "cpu", "pids"))
    assert memory == CGROUP_ROOT / "memory" / "docker" / cid
    assert (pids / "pids.max").read_text().strip() == "max"
    # --memory-swap: docker refuses a memory limit alone where swap is accounted and unlimited.
    docker("update", "--memory", "64m", "--memory-swap", "-1", "--cpus", "0.5", "--pids-limit", "50", cid,
           check=True)
    files = (memory / "memory.limit_in_bytes", cpu / "cpu.cfs_quota_us", cpu / "cpu.cfs_period_us",
             pids / "pids.max")
    outside = [f.read_text().strip() for f in files]
    assert outside == ["67108864", "50000", "100000", "50"]
    p = docker("exec", cid, "checker", "read", *LIMIT_FILES, check=True)
    inside = [v.strip() for v in json.loads(p.stdout).values()]
    assert inside == outside
    fmt = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"
    assert docker.inspect(cid, fmt) == "67108864 500000000 50"


def test_pause_unpause(docker: Docker) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    freezer = host_cgroup(pid, "freezer") / "freezer.state"
    docker("pause", cid, check=True)
    assert freezer.read_text().strip() == "FROZEN"
    assert docker.inspect(cid, "{{.State.Status}} {{.State.Paused}}") == "paused true"
    assert "(Paused)" in docker("ps", "--filter", f"id={cid}", "--format", "{{.Status}}", check=True).stdout
    wait_for(lambda: proc_field(pid, "State") == "D", "the frozen init to sleep in the freezer")
    p = docker("exec", cid, "true")
    assert p.returncode != 0 and "is paused" in p.stderr, p.stderr
    docker("unpause", cid, check=True)
    assert freezer.read_text().strip() == "THAWED"
    assert docker.inspect(cid, "{{.State.Status}} {{.State.Paused}}") == "running false"
    assert docker("exec", cid, "echo", "ok", check=True).stdout == "ok\n"
    docker("stop", "-t", "20", cid, check=True)
    assert docker.inspect(cid, "{{.State.ExitCode}}") == "3"


# ---- what the runtime keeps and leaves -----------------------------------------------------------

def test_runtime_root_holds_only_containers(docker: Docker) -> None:
    cid = docker.detached()
    other = docker.detached()
    root = docker.runtime_root()
    assert (root / cid / "state.json").is_file()
    assert sorted(os.listdir(root)) == sorted([cid, other])


@pytest.mark.parametrize("cgroupns", ["default", "private"])
@pytest.mark.skipif(not (CGROUP_ROOT / "systemd").is_dir(), reason="no name=systemd hierarchy on this host")
def test_named_systemd_hierarchy_inside(docker: Docker, cgroupns: str) -> None:
    opts = [] if cgroupns == "default" else ["--cgroupns", cgroupns]
    cid = docker.detached(*opts)
    pid = docker.pid(cid)
    private = docker.inspect(cid, "{{.HostConfig.CgroupnsMode}}") == "private"
    assert private == (cgroupns == "private")
    assert (os.readlink(f"/proc/{pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")) == private
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert [line.split(":", 1)[1] for line in lines if ":name=systemd:" in line] == [
        f"name=systemd:/docker/{cid}"]
    assert (CGROUP_ROOT / "systemd" / "docker" / cid).is_dir()
    p = docker("exec", cid, "sh", "-c", "ls /sys/fs/cgroup; echo --; grep name=systemd /proc/self/cgroup; "
               "echo --; cat /sys/fs/cgroup/systemd/cgroup.procs")
    listing, own, procs = (part.split() for part in p.stdout.split("--\n"))
    # runc names the mount of a named v1 hierarchy after the host's directory: /sys/fs/cgroup/systemd.
    assert "systemd" in listing and "name=systemd" not in listing, listing
    assert [line.split(":", 1)[1] for line in own] == [f"name=systemd:{'/' if private else f'/docker/{cid}'}"]
    assert p.returncode == 0 and "1" in procs, (p.stdout, p.stderr)


def test_rm_leaves_nothing(docker: Docker) -> None:
    cid = docker.detached()
    pid = docker.pid(cid)
    root = docker.runtime_root()
    assert (root / cid).is_dir()
    cgroups = container_cgroups(cid)
    assert all(d.is_dir() for d in cgroups), cgroups
    sandbox = docker.inspect(cid, "{{.NetworkSettings.SandboxKey}}")
    merged = ""
    if docker.driver == "overlay2":
        merged = docker.inspect(cid, '{{index .GraphDriver.Data "MergedDir"}}')
    mounts = _mount_points()
    assert sandbox in mounts and (not merged or merged in mounts)
    docker("stop", "-t", "20", cid, check=True)
    docker("rm", cid, check=True)
    assert docker("ps", "--all", "--quiet").stdout == ""
    assert not (root / cid).exists()
    assert [d for d in cgroups if d.exists()] == []
    assert _gone(pid)
    assert set(mounts_under(docker.tmp)) == docker.mounts_at_start
