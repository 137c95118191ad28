"""containerd 1.6 (``ctr`` + the io.containerd.runc.v2 shim) driving the runtime under test.

A private containerd runs for the session: its own config.toml, root, state, gRPC and ttrpc
sockets, all under one temporary directory, with the CRI plugin disabled (no CNI, no kubelet).
``ctr --runc-binary`` makes the shim call our runtime; ``--runc-root`` (the runtime's state) and
``--fifo-dir`` (ctr's stdio fifos) keep the rest in the same directory.  The image is an OCI
archive written here from the busybox rootfs of bundles/build.py (one uncompressed layer) and
loaded with ``ctr image import``.  Only the shims' sockets go to /run/containerd/s (a fixed path in
containerd 1.6); they disappear with the shims.

The shim puts containers in cgroup ``/<namespace>/<id>``; the runtime removes ``<id>`` on delete,
the ``ctr`` fixture removes the empty ``<namespace>`` parent before the leak check runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import bundles_build, new_id, run_in_pty
from engines import (
    CGROUP_ROOT,
    containerd_config,
    host_cgroup,
    launcher,
    mounts_under,
    proc_field,
    remove_empty_cgroups,
    stop_daemon,
    wait_for,
    write_oci_archive,
)

pytestmark = pytest.mark.root

IMAGE_BASE = "localhost/ocitest-bb"
IMAGE = f"{IMAGE_BASE}:latest"
TIMEOUT = 30
# Detached tasks: sh as init answers SIGTERM (ctr task kill's default) with status 5.
LOOP = ["sh", "-c", 'trap "exit 5" TERM; sleep 1000 & wait']


# ---- the daemon ---------------------------------------------------------------------------------

def _config(tmp: Path) -> str:
    return containerd_config(tmp, cri=False)


class Ctr:
    """ctr talking to the private containerd, in a namespace of its own."""

    def __init__(self, tmp: Path, runtime: str) -> None:
        self.tmp = tmp
        self.runtime = runtime
        self.namespace = f"ocitest-{uuid.uuid4().hex[:8]}"
        self.runc_root = tmp / "runc"
        self.base = ["ctr", "--address", str(tmp / "containerd.sock"), "--namespace", self.namespace]

    def __call__(self, *args: str, check: bool = False,
                 timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        p = subprocess.run([*self.base, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def run(self, *opts: str, args: list[str], cid: str | None = None, check: bool = False,
            detach: bool = False) -> subprocess.CompletedProcess:
        mode = "-d" if detach else "--rm"
        return self("run", mode, "--runc-binary", self.runtime, "--runc-root", str(self.runc_root),
                    "--fifo-dir", str(self.tmp / "fifo"), *opts, IMAGE, cid or new_id("ctr"), *args,
                    check=check)

    def detached(self, *opts: str) -> tuple[str, int]:
        cid = new_id("ctr")
        self.run(*opts, args=LOOP, cid=cid, detach=True, check=True)
        return cid, int(self.task(cid)["pid"])

    def tasks(self) -> dict[str, dict[str, str]]:
        rows = self("task", "ls", check=True).stdout.splitlines()[1:]
        return {r.split()[0]: {"pid": r.split()[1], "status": r.split()[2]} for r in rows if r.strip()}

    def task(self, cid: str) -> dict[str, str]:
        return self.tasks()[cid]

    def remove_everything(self) -> None:
        """Kill and delete every task and container of our namespace (after a failed test)."""
        for cid in self.tasks():
            self("task", "kill", "--signal", "SIGKILL", cid)
            self("task", "rm", "--force", cid)
        for line in self("container", "ls", "--quiet").stdout.split():
            self("container", "rm", line)


@pytest.fixture(scope="session")
def containerd_env(tmp_path_factory: pytest.TempPathFactory, rootfs_cache: Path,
                   checker: Path) -> Iterator[Ctr]:
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    tmp = tmp_path_factory.mktemp("containerd")
    (tmp / "config.toml").write_text(_config(tmp))
    ctr = Ctr(tmp, launcher(tmp))
    log = open(tmp / "containerd.log", "wb")
    daemon = subprocess.Popen(["containerd", "--config", str(tmp / "config.toml")], stdin=subprocess.DEVNULL,
                              stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while ctr("version").returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start: {(tmp / 'containerd.log').read_text()}")
            time.sleep(0.1)
        bundles_build.build_bundle(tmp / "image", checker=checker, rootfs_cache=rootfs_cache)
        (tmp / "layout").mkdir()
        write_oci_archive(tmp / "image" / "rootfs", tmp / "image.tar", tmp / "layout")
        ctr("image", "import", "--base-name", IMAGE_BASE, str(tmp / "image.tar"), check=True)
        yield ctr
    finally:
        if daemon.poll() is None:
            ctr.remove_everything()
            ctr("image", "rm", IMAGE)
            stop_daemon(daemon)
        log.close()
        remove_empty_cgroups(ctr.namespace)
        for point in mounts_under(tmp):
            subprocess.run(["umount", "-R", point], timeout=TIMEOUT, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def ctr(containerd_env: Ctr) -> Iterator[Ctr]:
    """Requested by each test: set up after the autouse leak check, so torn down before it."""
    yield containerd_env
    containerd_env.remove_everything()
    for top in CGROUP_ROOT.iterdir():
        try:
            (top / containerd_env.namespace).rmdir()  # only when empty: a container's cgroup is a leak
        except OSError:
            continue


# ---- ctr run --rm ------------------------------------------------------------------------------

def test_run_default(ctr: Ctr) -> None:
    p = ctr.run(args=["sh", "-c", "echo out; echo err >&2; grep ^Seccomp: /proc/self/status"])
    assert (p.returncode, p.stdout.split(), p.stderr) == (0, ["out", "Seccomp:", "0"], "err\n")


@pytest.mark.parametrize("status", [0, 1, 42])
def test_exit_status(ctr: Ctr, status: int) -> None:
    assert ctr.run(args=["sh", "-c", f"exit {status}"]).returncode == status


def test_missing_command(ctr: Ctr) -> None:
    p = ctr.run(args=["no-such-command"])
    assert p.returncode != 0
    assert 'exec: "no-such-command": executable file not found in $PATH' in p.stderr


def test_memory_and_cpus(ctr: Ctr) -> None:
    cid, pid = ctr.detached("--memory-limit", str(64 << 20), "--cpus", "0.5")
    memory, cpu = host_cgroup(pid, "memory"), host_cgroup(pid, "cpu")
    assert memory == CGROUP_ROOT / "memory" / ctr.namespace / cid
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"


def test_privileged(ctr: Ctr) -> None:
    p = ctr.run("--privileged", args=["grep", "^CapEff:", "/proc/self/status"])
    assert p.returncode == 0, p.stderr
    # Every capability this host lets us have (the test runner's bounding set).
    assert int(p.stdout.split()[1], 16) == int(proc_field("self", "CapBnd"), 16)


def test_net_host_read_only(ctr: Ctr) -> None:
    p = ctr.run("--net-host", "--read-only", args=["sh", "-c", "ls /sys/class/net; touch /x"])
    assert p.returncode != 0
    assert sorted(p.stdout.split()) == sorted(os.listdir("/sys/class/net"))
    assert "/x: Read-only file system" in p.stderr


def test_seccomp(ctr: Ctr) -> None:
    probe = ["sh", "-c", "grep ^Seccomp: /proc/self/status; unshare -U true"]
    p = ctr.run("--seccomp", args=probe)
    assert p.stdout.split() == ["Seccomp:", "2"]
    # containerd's default profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN, which
    # the same container is allowed without the profile.
    assert p.returncode != 0 and "unshare" in p.stderr
    unfiltered = ctr.run(args=probe)
    assert (unfiltered.returncode, unfiltered.stdout.split()) == (0, ["Seccomp:", "0"]), unfiltered.stderr


# ---- detached tasks -----------------------------------------------------------------------------

def test_detached_kill_rm(ctr: Ctr) -> None:
    cid, pid = ctr.detached()
    assert ctr.task(cid)["status"] == "RUNNING"
    assert (ctr.runc_root / ctr.namespace / cid / "state.json").is_file()
    ctr("task", "kill", cid, check=True)
    wait_for(lambda: ctr.task(cid)["status"] == "STOPPED", "the task to stop")
    assert not Path(f"/proc/{pid}").exists()
    p = ctr("task", "rm", cid, check=True)
    assert "exit with non-zero exit code 5" in p.stderr
    assert cid not in ctr.tasks()
    assert not (ctr.runc_root / ctr.namespace / cid).exists()
    ctr("container", "rm", cid, check=True)


def test_pause_resume(ctr: Ctr) -> None:
    cid, pid = ctr.detached()
    freezer = host_cgroup(pid, "freezer") / "freezer.state"
    ctr("task", "pause", cid, check=True)
    assert ctr.task(cid)["status"] == "PAUSED"
    assert freezer.read_text().strip() == "FROZEN"
    ctr("task", "resume", cid, check=True)
    assert ctr.task(cid)["status"] == "RUNNING"
    assert freezer.read_text().strip() == "THAWED"
    ctr("task", "kill", cid, check=True)
    wait_for(lambda: ctr.task(cid)["status"] == "STOPPED", "the resumed task to answer SIGTERM")


def test_task_ps(ctr: Ctr) -> None:
    cid, pid = ctr.detached()
    procs = host_cgroup(pid, "pids") / "cgroup.procs"
    wait_for(lambda: len(procs.read_text().split()) == 2, "sh and its sleep")
    rows = ctr("task", "ps", cid, check=True).stdout.splitlines()[1:]
    assert sorted(int(r.split()[0]) for r in rows) == sorted(int(x) for x in procs.read_text().split())
    assert pid in [int(r.split()[0]) for r in rows]


# ---- exec ---------------------------------------------------------------------------------------

def test_task_exec(ctr: Ctr) -> None:
    cid, _pid = ctr.detached()
    p = ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo out; echo $$; exit 4")
    assert p.returncode == 4, p.stderr
    out = p.stdout.split()
    assert out[0] == "out" and out[1] != "1"
    p = ctr("task", "exec", "--exec-id", "e2", cid, "cat", "/proc/1/cmdline")
    assert p.returncode == 0 and p.stdout.startswith("sh"), p.stderr


def test_task_exec_tty(ctr: Ctr) -> None:
    cid, _pid = ctr.detached()
    cmd = [*ctr.base, "task", "exec", "--tty", "--exec-id", "t1", cid, "sh", "-c",
           "tty; read line; echo got:$line; exit 6"]
    code, out = run_in_pty(cmd, b"/dev/pts/", b"hello\r")
    assert code == 6, out
    assert b"got:hello" in out
