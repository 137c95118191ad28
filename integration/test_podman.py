"""podman 4.x + conmon driving the runtime under test (``--runtime``, cgroupfs manager).

Everything podman writes goes under one private temporary directory: its storage (``--root``,
``--runroot``, vfs driver, so no overlay mounts), its containers.conf (``CONTAINERS_CONF``: default
ulimits within this host's hard limits, file events, no default network, our runtime in
``runtime_supports_json``), its network configs and tmp dir.  Image copies would update the blob
info cache in /var/lib/containers/cache, so ``podman import`` runs in a private mount namespace
with a tmpfs over that directory.  The image is the busybox rootfs of bundles/build.py with the
checker, imported as ``localhost/ocitest-bb``.

podman does not pass ``--root`` to a runtime it does not know, so the runtime keeps its state in
its default root (/run/ociruntime): the tests read it there to see that podman deleted containers.
podman's own cgroups (``libpod_parent`` and ``libpod_parent/conmon`` in every hierarchy) are
removed by the ``podman`` fixture before the leak check runs; container cgroups are the runtime's
to remove and stay visible to that check.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import bundles_build, runtime_cmd
from engines import CGROUP_ROOT, host_cgroup, launcher, mounts_under, proc_field, wait_for

pytestmark = pytest.mark.root

IMAGE = "localhost/ocitest-bb"
TIMEOUT = 60
RUNTIME_DEFAULT_ROOT = Path("/run/ociruntime")
BLOB_CACHE = Path("/var/lib/containers/cache")
# Detached containers: sh as init traps SIGTERM (so `stop` is answered with status 3, not a
# SIGKILL after the timeout) and waits on a child that `top` can see.
LOOP = ["sh", "-c", 'trap "exit 3" TERM; sleep 1000 & wait']
LIMIT_FILES = ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
               "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _containers_conf(tmp: Path, runtime: str) -> str:
    return f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"

[network]
network_config_dir = "{tmp}/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{tmp}/tmp"
volume_path = "{tmp}/volumes"
runtime = "ociruntime"
runtime_supports_json = ["ociruntime"]

[engine.runtimes]
ociruntime = ["{runtime}"]
"""


def _storage_conf(tmp: Path) -> str:
    return f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp}/root"\nrunroot = "{tmp}/run"\n'


def _procs_in(cgroup: Path) -> bool:
    try:
        return bool((cgroup / "cgroup.procs").read_text().strip())
    except OSError:
        return False


def remove_cgroup_tree(name: str, only: set[str] | None = None, wait: float = 10.0) -> None:
    """rmdir ``/sys/fs/cgroup/<hierarchy>/<name>`` bottom-up in every hierarchy (and
    ``/sys/fs/cgroup/<name>`` where /sys/fs/cgroup is the one cgroup2 hierarchy).

    With ``only``, just those child names and then ``name`` itself if it became empty.  Waits up
    to ``wait`` seconds for processes to leave (conmon and its cleanup command exit after the
    container), and never removes a directory that still holds processes.
    """
    deadline = time.monotonic() + wait
    for top in (CGROUP_ROOT, *CGROUP_ROOT.iterdir()):
        base = top / name
        if not base.is_dir():
            continue
        dirs = [Path(d) for d, _, _ in os.walk(base, topdown=False)]
        if only is not None:
            dirs = [base / child for child in only] + [base]
        for d in dirs:
            if not d.is_dir():
                continue
            while _procs_in(d) and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                d.rmdir()
            except OSError:
                continue


class Podman:
    """podman with the private storage and configuration of this session."""

    def __init__(self, tmp: Path, runtime: str) -> None:
        self.tmp = tmp
        self.runtime = runtime
        self.env = dict(os.environ, CONTAINERS_CONF=str(tmp / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(tmp / "storage.conf"),
                        XDG_CONFIG_HOME=str(tmp / "xdg-config"), XDG_DATA_HOME=str(tmp / "xdg-data"),
                        XDG_RUNTIME_DIR=str(tmp / "xdg-run"))
        self.base = ["podman", "--root", str(tmp / "root"), "--runroot", str(tmp / "run"),
                     "--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs",
                     "--runtime", runtime]

    def __call__(self, *args: str, check: bool = False, timeout: float = TIMEOUT,
                 prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        p = subprocess.run([*prefix, *self.base, *args], env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def copying(self, *args: str) -> subprocess.CompletedProcess:
        """An image copy, in a private mount namespace where the blob info cache is a tmpfs."""
        target = BLOB_CACHE if BLOB_CACHE.is_dir() else BLOB_CACHE.parent
        while not target.is_dir():
            target = target.parent
        script = f'mount -t tmpfs ocitest {shlex.quote(str(target))} && exec "$@"'
        return self(*args, check=True, prefix=("unshare", "--mount", "--propagation", "private",
                                                "sh", "-c", script, "sh"))

    def run_rm(self, *args: str) -> subprocess.CompletedProcess:
        return self("run", "--rm", *args)

    def inspect(self, cid: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, cid, check=True).stdout.strip()

    def detached(self, *opts: str) -> str:
        return self("run", "-d", *opts, IMAGE, *LOOP, check=True).stdout.strip()

    def pid(self, cid: str) -> int:
        return int(self.inspect(cid, "{{.State.Pid}}"))


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory, rootfs_cache: Path,
               checker: Path) -> Iterator[Podman]:
    for tool in ("podman", "conmon", "unshare", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    tmp = tmp_path_factory.mktemp("podman")
    had_default_root = RUNTIME_DEFAULT_ROOT.exists()
    runtime = launcher(tmp)
    (tmp / "containers.conf").write_text(_containers_conf(tmp, runtime))
    (tmp / "storage.conf").write_text(_storage_conf(tmp))
    for d in ("networks", "tmp", "volumes", "xdg-config", "xdg-data", "xdg-run"):
        (tmp / d).mkdir(mode=0o700)
    pm = Podman(tmp, runtime)
    try:
        bundles_build.build_bundle(tmp / "image", checker=checker, rootfs_cache=rootfs_cache)
        subprocess.run(["tar", "-C", str(tmp / "image" / "rootfs"), "-cf", str(tmp / "rootfs.tar"), "."],
                       check=True, timeout=TIMEOUT)
        pm.copying("import", str(tmp / "rootfs.tar"), IMAGE)
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0")
        remove_cgroup_tree("libpod_parent")
        for point in mounts_under(tmp):
            subprocess.run(["umount", "-R", point], timeout=TIMEOUT, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        if not had_default_root:
            try:
                RUNTIME_DEFAULT_ROOT.rmdir()
            except OSError:
                pass


@pytest.fixture
def podman(podman_env: Podman) -> Iterator[Podman]:
    """Requested by each test: set up after the autouse leak check, so torn down before it."""
    yield podman_env
    podman_env("rm", "--all", "--force", "--time", "0")
    remove_cgroup_tree("libpod_parent", only={"conmon"})


def runtime_state(cid: str) -> subprocess.CompletedProcess:
    return subprocess.run([*runtime_cmd(), "--root", str(RUNTIME_DEFAULT_ROOT), "state", cid],
                          capture_output=True, text=True, timeout=TIMEOUT)


# ---- podman run --rm ---------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "status"), [(["true"], 0), (["sh", "-c", "exit 42"], 42)])
def test_exit_status(podman: Podman, args: list[str], status: int) -> None:
    p = podman.run_rm(IMAGE, *args)
    assert p.returncode == status, p.stderr


def test_output_and_json_log(podman: Podman) -> None:
    p = podman.run_rm(IMAGE, "sh", "-c", "echo out; echo err >&2")
    assert (p.returncode, p.stdout, p.stderr) == (0, "out\n", "err\n")


def test_missing_command_is_127(podman: Podman) -> None:
    p = podman.run_rm(IMAGE, "no-such-command")
    assert p.returncode == 127, p.stderr
    assert 'exec: "no-such-command": executable file not found in $PATH' in p.stderr
    assert "OCI runtime attempted to invoke a command that was not found" in p.stderr


def test_not_executable_is_126(podman: Podman) -> None:
    p = podman.run_rm(IMAGE, "/etc/passwd")
    assert p.returncode == 126, p.stderr
    assert 'exec: "/etc/passwd": permission denied' in p.stderr


def test_tty(podman: Podman) -> None:
    p = podman.run_rm("-t", IMAGE, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-tty")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.replace("\r\n", "\n").split()
    assert lines[0].startswith("/dev/pts/") and lines[1] == "both-tty"


def test_default_seccomp_profile(podman: Podman) -> None:
    p = podman.run_rm(IMAGE, "grep", "^Seccomp:", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["Seccomp:", "2"]


def test_user(podman: Podman) -> None:
    p = podman.run_rm("--user", "1000:1000", IMAGE, "sh", "-c", "id -u; id -g; touch /home/user/x && echo ok")
    assert (p.returncode, p.stdout.split()) == (0, ["1000", "1000", "ok"]), p.stderr


def test_bind_volume_read_only(podman: Podman, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("data\n")
    p = podman.run_rm("-v", f"{vol}:/data:ro", IMAGE, "sh", "-c", "cat /data/f; echo x > /data/g")
    assert p.returncode != 0 and p.stdout == "data\n"
    assert "Read-only file system" in p.stderr
    assert sorted(os.listdir(vol)) == ["f"]


def test_read_only_root(podman: Podman) -> None:
    # podman keeps /tmp writable (a tmpfs) under --read-only; the image itself is not.
    p = podman.run_rm("--read-only", IMAGE, "sh", "-c", "touch /tmp/ok && touch /bin/x")
    assert p.returncode != 0
    assert "/bin/x: Read-only file system" in p.stderr and "/tmp/ok" not in p.stderr


def test_network_none(podman: Podman) -> None:
    p = podman.run_rm("--network", "none", IMAGE, "ls", "/sys/class/net")
    assert (p.returncode, p.stdout.split()) == (0, ["lo"]), p.stderr


def test_limits_seen_inside(podman: Podman) -> None:
    p = podman.run_rm("--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", IMAGE,
                      "checker", "read", *LIMIT_FILES)
    assert p.returncode == 0, p.stderr
    got = {k: v.strip() for k, v in json.loads(p.stdout).items()}
    assert got == dict(zip(LIMIT_FILES, ("67108864", "50", "50000", "100000"), strict=True))


# ---- detached containers ------------------------------------------------------------------------

def test_detached_stop_rm(podman: Podman) -> None:
    cid = podman.detached()
    assert podman.inspect(cid, "{{.State.Status}}") == "running"
    assert json.loads(runtime_state(cid).stdout)["status"] == "running"
    podman("stop", "--time", "20", cid, check=True)
    assert podman.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 3"
    podman("rm", cid, check=True)
    assert podman("ps", "--all", "--quiet", "--no-trunc").stdout.split() == []
    gone = runtime_state(cid)
    assert gone.returncode != 0 and "container does not exist" in gone.stderr


def test_update(podman: Podman) -> None:
    cid = podman.detached("--memory", "64m", "--cpus", "0.5")
    pid = podman.pid(cid)
    memory, cpu = host_cgroup(pid, "memory"), host_cgroup(pid, "cpu")
    assert (memory / "memory.limit_in_bytes").read_text().strip() == "67108864"
    podman("update", "--memory", "128m", "--cpus", "1.5", cid, check=True)
    assert (memory / "memory.limit_in_bytes").read_text().strip() == "134217728"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "150000"


def test_pause_unpause(podman: Podman) -> None:
    cid = podman.detached()
    pid = podman.pid(cid)
    freezer = host_cgroup(pid, "freezer") / "freezer.state"
    podman("pause", cid, check=True)
    assert podman.inspect(cid, "{{.State.Status}}") == "paused"
    assert freezer.read_text().strip() == "FROZEN"
    wait_for(lambda: proc_field(pid, "State") == "D", "the frozen init to sleep in the freezer")
    podman("unpause", cid, check=True)
    assert podman.inspect(cid, "{{.State.Status}}") == "running"
    assert freezer.read_text().strip() == "THAWED"
    podman("stop", "--time", "20", cid, check=True)
    assert podman.inspect(cid, "{{.State.ExitCode}}") == "3"


def test_top(podman: Podman) -> None:
    cid = podman.detached()
    p = podman("top", cid, "pid", "args", check=True)
    rows = [line.split(None, 1) for line in p.stdout.splitlines()[1:]]
    # Pids as seen in the container's pid namespace: sh is 1, its sleep another.
    assert ["1", f"sh -c {LOOP[2]}"] in [[pid, args.strip()] for pid, args in rows]
    assert any(args.strip() == "sleep 1000" for _, args in rows)


# ---- exec ---------------------------------------------------------------------------------------

def test_exec(podman: Podman) -> None:
    cid = podman.detached()
    p = podman("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    # the process is inside the container: its pid namespace, its root
    p = podman("exec", cid, "sh", "-c", "echo $$; cat /etc/hostname", check=True)
    assert p.stdout.split()[0] != "1"
    p = podman("exec", cid, "no-such-command")
    assert p.returncode == 127, p.stderr


def test_exec_tty(podman: Podman) -> None:
    cid = podman.detached()
    p = podman("exec", "-t", cid, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-tty", check=True)
    lines = p.stdout.replace("\r\n", "\n").split()
    assert lines[0].startswith("/dev/pts/") and lines[1] == "both-tty"


def test_exec_user_workdir_env(podman: Podman) -> None:
    cid = podman.detached()
    p = podman("exec", "--user", "1000:1000", "-w", "/tmp", "-e", "FOO=bar", cid,
               "sh", "-c", "id -u; id -g; pwd; echo $FOO", check=True)
    assert p.stdout.split() == ["1000", "1000", "/tmp", "bar"]


def test_healthcheck_run(podman: Podman) -> None:
    cid = podman("run", "-d", "--health-cmd", "test -e /etc/passwd", "--health-interval", "disable",
                 IMAGE, *LOOP, check=True).stdout.strip()
    p = podman("healthcheck", "run", cid)
    assert p.returncode == 0, p.stderr
    assert podman.inspect(cid, "{{.State.Health.Status}}") == "healthy"
    bad = podman("run", "-d", "--health-cmd", "test -e /nonexistent", "--health-interval", "disable",
                 IMAGE, *LOOP, check=True).stdout.strip()
    assert podman("healthcheck", "run", bad).returncode != 0
