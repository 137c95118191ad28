"""checkpoint/restore with CRIU against real containers.

The CRIU scenarios run only where ``criu check`` passes: Debian's criu 3.17 fails it on our
hosts' kernel (vdso), and passes in the pure cgroup v2 qemu guest (Debian's 6.1 kernel), where
``make test`` runs this file (integration/v2guest/run.py ``DEFAULT_TESTS``)::

    make install PREFIX=/tmp/ocicriu
    OCIRUNTIME=/tmp/ocicriu/bin/ociruntime /usr/bin/python3 integration/v2guest/run.py -- \\
        integration/test_checkpoint.py -q

The containers get pipes as stdio, as under podman (conmon) and containerd: CRIU cannot dump a
host file such as a log file (and the checks without CRIU below test that we say so).  The host's
/dev/null is the exception: the init swaps it for the container's own /dev/null, as runc does,
so podman's detached containers (conmon gives them /dev/null as stdin) can be checkpointed; the
last tests run `podman container checkpoint/restore` through the runtime.
The counter writes to a tmpfs of the container (/tmp) and to a host directory bound at /data
(an external mount for CRIU), so both the dumped memory and the mounts are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from functools import cache
from pathlib import Path

import pytest
from conftest import ConsoleReceiver, new_id, runtime_cmd
from test_podman import IMAGE, Podman, podman, podman_env  # noqa: F401  (the private podman)

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; echo $i > /data/n; sleep 0.1; done"


@cache
def criu_check() -> str:
    """Why CRIU cannot be used here ("" when ``criu check`` passes)."""
    criu = shutil.which("criu")
    if criu is None:
        return "criu is not installed"
    p = subprocess.run([criu, "check"], capture_output=True, text=True)
    if p.returncode != 0:
        lines = [line for line in (p.stderr + p.stdout).splitlines() if "Error" in line]
        return f"criu check fails here: {lines[0] if lines else p.returncode}"
    return ""


needs_criu = pytest.mark.skipif("criu_check() != ''", reason="criu check does not pass on this kernel")


class Pipes:
    """stdio for a container (or restore): pipes whose other ends the test keeps open."""

    def __init__(self) -> None:
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        os.set_blocking(self.out_r, False)

    def run(self, rt_root: Path, *args: str, timeout: float = 120,
            stdin: int | None = None) -> subprocess.CompletedProcess:
        """Run the runtime with these pipes as its stdio (what a detached container inherits)."""
        cmd = [*runtime_cmd(), "--root", str(rt_root), *args]
        p = subprocess.run(cmd, stdin=self.in_r if stdin is None else stdin, stdout=self.out_w,
                           stderr=self.out_w, timeout=timeout)
        return subprocess.CompletedProcess(cmd, p.returncode, self.read(), b"")

    def read(self) -> bytes:
        try:
            return os.read(self.out_r, 65536)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        for fd in (self.in_r, self.in_w, self.out_r, self.out_w):
            os.close(fd)


@pytest.fixture
def pipes():
    p = Pipes()
    yield p
    p.close()


def counter_bundle(bundle, data: Path) -> Path:
    data.mkdir(exist_ok=True)

    def mutate(cfg: dict) -> None:
        cfg["mounts"] += [
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
            {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "rw"]},
        ]

    return bundle(["sh", "-c", COUNTER], mutate=mutate)


def read_n(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def wait_count(path: Path, above: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = read_n(path)
        if n > above:
            return n
        time.sleep(0.05)
    raise AssertionError(f"{path} stayed at {read_n(path)} (wanted > {above})")


def started(rt, pipes: Pipes, bundle_dir: Path, cid: str) -> None:
    p = pipes.run(rt.root, "run", "-d", "--bundle", str(bundle_dir), cid)
    assert p.returncode == 0, p.stdout


def counting(rt, bundle, pipes: Pipes, tmp_path: Path, above: int = 3) -> tuple[Path, str, Path]:
    """A running counter container: (its bundle, its id, the host file it counts in)."""
    data = tmp_path / "data"
    b = counter_bundle(bundle, data)
    cid = new_id("cr")
    started(rt, pipes, b, cid)
    wait_count(data / "n", above)
    return b, cid, data / "n"


def assert_gone(rt, cid: str) -> None:
    p = rt("state", cid)
    assert p.returncode != 0 and b"does not exist" in p.stderr, p


def one_line_error(p: subprocess.CompletedProcess) -> str:
    err = p.stderr.decode().strip()
    assert p.returncode != 0
    assert err and len(err.splitlines()) == 1, err
    return err


@needs_criu
def test_checkpoint_restore_counter_continues(rt, bundle, pipes, tmp_path: Path) -> None:
    b, cid, n_file = counting(rt, bundle, pipes, tmp_path, 5)
    img, work = tmp_path / "img", tmp_path / "work"
    p = rt("checkpoint", "--image-path", str(img), "--work-path", str(work), cid)
    assert p.returncode == 0, p.stderr
    # runc's behaviour: without --leave-running the container is gone once dumped.
    assert_gone(rt, cid)
    assert json.loads((img / "descriptors.json").read_text())[0].startswith("pipe:")
    assert (work / "dump.log").exists()
    frozen = read_n(n_file)
    time.sleep(0.5)
    assert read_n(n_file) == frozen, "the checkpointed container still runs"

    pid_file = tmp_path / "restored.pid"
    p = pipes.run(rt.root, "restore", "--detach", "--pid-file", str(pid_file), "--image-path", str(img),
                  "--work-path", str(work), "--bundle", str(b), cid)
    assert p.returncode == 0, p.stdout + (work / "restore.log").read_bytes()[-3000:]
    assert p.stdout == b""
    pid = int(pid_file.read_text())
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    # The counter goes on from its own memory: the next value follows the dumped one.
    n = wait_count(n_file, frozen)
    assert frozen < n < frozen + 100, (frozen, n)
    # exec joins the restored namespaces: the container's tmpfs came back with the counter.
    p = rt("exec", cid, "cat", "/tmp/n")
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) > frozen
    p = rt("exec", cid, "sh", "-c", "readlink /proc/1/fd/1; cat /proc/1/cmdline")
    assert p.returncode == 0 and p.stdout.startswith(b"pipe:"), p
    # As at create: the root stays read-only, lo is up in the container's own network namespace,
    # and the init sits in the container's cgroup.
    assert rt("exec", cid, "touch", "/x").returncode != 0
    p = rt("exec", cid, "cat", "/sys/class/net/lo/flags")
    assert p.returncode == 0 and int(p.stdout, 16) & 1, p
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert cid in Path(f"/proc/{pid}/cgroup").read_text()
    assert rt("kill", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 30
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.state(cid)["status"] == "stopped"
    assert rt("delete", cid).returncode == 0
    assert_gone(rt, cid)


@needs_criu
def test_leave_running(rt, bundle, pipes, tmp_path: Path) -> None:
    b, cid, n_file = counting(rt, bundle, pipes, tmp_path)
    n = read_n(n_file)
    img = tmp_path / "img"
    p = rt("checkpoint", "--leave-running", "--image-path", str(img), cid)
    assert p.returncode == 0, p.stderr
    assert rt.state(cid)["status"] == "running"
    wait_count(n_file, n + 3)
    assert (img / "inventory.img").exists()
    # A second container from the images while the first still runs.
    cid2 = new_id("cr2")
    p = pipes.run(rt.root, "restore", "-d", "--image-path", str(img), "--bundle", str(b), cid2)
    assert p.returncode == 0, p.stdout
    assert rt.state(cid2)["status"] == "running"
    for c in (cid, cid2):
        assert rt("delete", "--force", c).returncode == 0


@needs_criu
def test_pre_dump_then_dump(rt, bundle, pipes, tmp_path: Path) -> None:
    b, cid, n_file = counting(rt, bundle, pipes, tmp_path, 3)
    pre, final = tmp_path / "img" / "pre", tmp_path / "img" / "final"
    p = rt("checkpoint", "--pre-dump", "--image-path", str(pre), cid)
    assert p.returncode == 0, p.stderr
    assert rt.state(cid)["status"] == "running"
    assert list(pre.glob("pages-*.img"))
    p = rt("checkpoint", "--image-path", str(final), "--parent-path", "../pre", cid)
    assert p.returncode == 0, p.stderr
    assert_gone(rt, cid)
    frozen = read_n(n_file)
    p = pipes.run(rt.root, "restore", "-d", "--image-path", str(final), "--bundle", str(b), cid)
    assert p.returncode == 0, p.stdout
    n = wait_count(n_file, frozen)
    assert n < frozen + 100
    assert rt("delete", "--force", cid).returncode == 0


@needs_criu
def test_restore_foreground_exit_status(rt, bundle, pipes, tmp_path: Path) -> None:
    b, cid, n_file = counting(rt, bundle, pipes, tmp_path, 3)
    img = tmp_path / "img"
    assert rt("checkpoint", "--image-path", str(img), cid).returncode == 0
    frozen = read_n(n_file)
    cmd = [*runtime_cmd(), "--root", str(rt.root), "restore", "--image-path", str(img), "--bundle",
           str(b), cid]
    fg = subprocess.Popen(cmd, stdin=pipes.in_r, stdout=pipes.out_w, stderr=pipes.out_w)
    try:
        wait_count(n_file, frozen)
        assert rt.state(cid)["status"] == "running"
        assert rt("kill", cid, "KILL").returncode == 0
        assert fg.wait(timeout=60) == 128 + 9
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()
    # runc deletes the container once its foreground restore ends.
    assert_gone(rt, cid)


@needs_criu
def test_failed_restore_leaves_nothing(rt, bundle, pipes, tmp_path: Path) -> None:
    b, cid, _ = counting(rt, bundle, pipes, tmp_path, 2)
    # No image directory at all (the id is in use: the image check comes first).
    p = rt("restore", "-d", "--image-path", str(tmp_path / "missing"), "--bundle", str(b), cid + "x")
    assert "no such directory" in one_line_error(p)
    assert_gone(rt, cid + "x")
    # A real checkpoint with its images damaged: criu fails, we undo everything.
    img = tmp_path / "img"
    assert rt("checkpoint", "--image-path", str(img), cid).returncode == 0
    for f in img.glob("pstree.img"):
        f.write_bytes(b"\0garbage")
    p = pipes.run(rt.root, "restore", "-d", "--image-path", str(img), "--bundle", str(b), cid)
    assert p.returncode != 0
    assert b"criu failed" in p.stdout and len(p.stdout.decode().strip().splitlines()) == 1, p.stdout
    assert_gone(rt, cid)
    # An image directory without descriptors.json (not made by checkpoint).
    (img / "descriptors.json").unlink()
    p = rt("restore", "-d", "--image-path", str(img), "--bundle", str(b), cid)
    assert "descriptors.json" in one_line_error(p)
    assert_gone(rt, cid)


# ---- refusals that need no working CRIU (they run on any host) ----------------------------------

def test_checkpoint_refuses_created_container(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["true"])
    cid = new_id("cr")
    assert rt("create", "--bundle", str(b), cid).returncode == 0
    try:
        p = rt("checkpoint", "--image-path", str(tmp_path / "img"), cid)
        assert "cannot be checkpointed in created state" in one_line_error(p)
        assert rt.state(cid)["status"] == "created"
    finally:
        rt("delete", "--force", cid)


@pytest.mark.skipif(shutil.which("criu") is None, reason="criu is not installed")
def test_checkpoint_refuses_host_file_stdio(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["sleep", "100"])
    cid = new_id("cr")
    # The runner's stdio is temporary files: host files CRIU cannot dump.
    assert rt("run", "-d", "--bundle", str(b), cid).returncode == 0
    try:
        p = rt("checkpoint", "--image-path", str(tmp_path / "img"), cid)
        assert "a file outside the container" in one_line_error(p)
        assert rt.state(cid)["status"] == "running"
    finally:
        rt("delete", "--force", cid)


def _fd_mnt_id(pid: int, fd: int) -> int:
    info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    return next(int(line.split()[1]) for line in info.splitlines() if line.startswith("mnt_id:"))


def test_host_dev_null_stdin_becomes_the_containers(rt, bundle, pipes, tmp_path: Path) -> None:
    """runc's reOpenDevNull: stdio on the host's /dev/null is reopened on the container's /dev."""
    cid = new_id("cr")
    with open(os.devnull, "rb") as null:
        p = pipes.run(rt.root, "run", "-d", "--bundle", str(bundle(["sleep", "100"])), cid,
                      stdin=null.fileno())
    assert p.returncode == 0, p.stdout
    try:
        pid = rt.state(cid)["pid"]
        dev = next(line.split()[0] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                   if line.split()[4] == "/dev")
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert _fd_mnt_id(pid, 0) == int(dev), "stdin is still the host's /dev/null"
        assert os.stat(f"/proc/{pid}/fd/0").st_rdev == os.makedev(1, 3)
        # Pipes are left alone.
        assert os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:")
    finally:
        rt("delete", "--force", cid)


@needs_criu
def test_checkpoint_restore_with_dev_null_stdin(rt, bundle, pipes, tmp_path: Path) -> None:
    data = tmp_path / "data"
    b = counter_bundle(bundle, data)
    cid = new_id("cr")
    with open(os.devnull, "rb") as null:
        p = pipes.run(rt.root, "run", "-d", "--bundle", str(b), cid, stdin=null.fileno())
    assert p.returncode == 0, p.stdout
    wait_count(data / "n", 3)
    img, work = tmp_path / "img", tmp_path / "work"
    p = rt("checkpoint", "--image-path", str(img), "--work-path", str(work), cid)
    assert p.returncode == 0, p.stderr + (work / "dump.log").read_bytes()[-3000:]
    assert json.loads((img / "descriptors.json").read_text())[0] == "/dev/null"
    frozen = read_n(data / "n")
    with open(os.devnull, "rb") as null:
        p = pipes.run(rt.root, "restore", "--detach", "--image-path", str(img), "--work-path", str(work),
                      "--bundle", str(b), cid, stdin=null.fileno())
    assert p.returncode == 0, p.stdout + (work / "restore.log").read_bytes()[-3000:]
    try:
        wait_count(data / "n", frozen)
        assert os.readlink(f"/proc/{rt.state(cid)['pid']}/fd/0") == "/dev/null"
    finally:
        rt("delete", "--force", cid)
    assert_gone(rt, cid)


@needs_criu
@pytest.mark.parametrize("run_flags", [["-d"], ["-dt"]], ids=["detached", "terminal"])
def test_podman_checkpoint_restore(podman: Podman, run_flags: list[str]) -> None:  # noqa: F811
    """`podman container checkpoint/restore`: conmon's /dev/null stdin (or, with -t, a terminal
    whose new master restore sends to conmon's console socket), podman's bind mounts
    (/etc/hosts, /run/.containerenv ...) and, on v2, a private cgroup namespace."""
    # Written aside and renamed: a `cat` between the shell's truncate and write would read "".
    count = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.1; done"
    cid = podman("run", *run_flags, IMAGE, "sh", "-c", count, check=True).stdout.strip()
    time.sleep(0.5)
    podman("container", "checkpoint", cid, check=True)
    assert podman.inspect(cid, "{{.State.Status}}") == "exited"
    podman("container", "restore", cid, check=True)
    assert podman.inspect(cid, "{{.State.Status}}") == "running"
    n1 = int(podman("exec", cid, "cat", "/tmp/n", check=True).stdout)
    time.sleep(0.5)
    n2 = int(podman("exec", cid, "cat", "/tmp/n", check=True).stdout)
    # The counter continues from its dumped memory (a fresh start would be back near 1).
    assert n1 > 3 and n2 > n1, (n1, n2)
    podman("rm", "--force", "--time", "0", cid, check=True)


@needs_criu
def test_terminal_container_restores_onto_a_new_console(rt, bundle, tmp_path: Path) -> None:
    """runc's orphan_pts_master: the dumped pty slave comes back with a new master, which restore
    sends to its --console-socket; the shell reading the terminal goes on answering there."""
    def tty(cfg: dict) -> None:
        cfg["process"]["terminal"] = True

    b = bundle(["sh", "-c", 'while read l; do echo "got:$l"; done'], mutate=tty)
    cid = new_id("cr")
    first, second = ConsoleReceiver(tmp_path / "c1.sock"), ConsoleReceiver(tmp_path / "c2.sock")
    p = rt("run", "-d", "--console-socket", str(tmp_path / "c1.sock"), "--bundle", str(b), cid)
    assert p.returncode == 0, p.stderr
    try:
        _wait_for(lambda: first.master >= 0, "the first console")
        os.write(first.master, b"one\n")
        _wait_for(lambda: b"got:one" in first.output, "an answer on the first console")
        img = tmp_path / "img"
        p = rt("checkpoint", "--image-path", str(img), cid)
        assert p.returncode == 0, p.stderr + (img / "dump.log").read_bytes()[-3000:]
        # Without a console socket there is nowhere to put the terminal: one line, nothing made.
        p = rt("restore", "--detach", "--image-path", str(img), "--bundle", str(b), cid)
        assert "needs --console-socket" in one_line_error(p)
        assert_gone(rt, cid)
        p = rt("restore", "--detach", "--console-socket", str(tmp_path / "c2.sock"), "--image-path", str(img),
               "--bundle", str(b), cid)
        assert p.returncode == 0, p.stderr + (img / "restore.log").read_bytes()[-3000:]
        _wait_for(lambda: second.master >= 0, "the restored console")
        assert second.name == b"orphan-pts-master"
        os.write(second.master, b"two\n")
        _wait_for(lambda: b"got:two" in second.output, "an answer on the restored console")
        assert rt.state(cid)["status"] == "running"
    finally:
        rt("delete", "--force", cid)
        for recv in (first, second):
            recv.thread.join(20)
            if recv.master >= 0:
                os.close(recv.master)
    assert_gone(rt, cid)


@needs_criu
def test_prestart_and_create_runtime_hooks_run_on_restore(rt, bundle, pipes, tmp_path: Path) -> None:
    """runc runs them at CRIU's setup-namespaces, with the restored init's pid in the state."""
    calls = tmp_path / "hooks.log"

    def script(kind: str) -> str:
        return f"(echo {kind}; cat; echo) >> {calls}"

    def hooks(cfg: dict) -> None:
        cfg["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", script(kind)]}]
                        for kind in ("prestart", "createRuntime")}

    b = bundle(["sleep", "1000"], mutate=hooks)
    cid = new_id("cr")
    started(rt, pipes, b, cid)
    img = tmp_path / "img"
    try:
        p = rt("checkpoint", "--image-path", str(img), cid)
        assert p.returncode == 0, p.stderr
        calls.write_text("")
        p = pipes.run(rt.root, "restore", "--detach", "--image-path", str(img), "--bundle", str(b), cid)
        assert p.returncode == 0, p.stdout
        lines = [line for line in calls.read_text().splitlines() if line]
        assert lines[0::2] == ["prestart", "createRuntime"], lines
        states = [json.loads(x) for x in lines[1::2]]
        pid = rt.state(cid)["pid"]
        assert all(s["pid"] == pid and s["id"] == cid and s["status"] == "creating" for s in states), states
    finally:
        rt("delete", "--force", cid)
    assert_gone(rt, cid)


@needs_criu
def test_a_failing_restore_hook_leaves_nothing(rt, bundle, pipes, tmp_path: Path) -> None:
    flag = tmp_path / "fail"

    def hooks(cfg: dict) -> None:
        cfg["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"! test -e {flag}"]}]}

    b = bundle(["sleep", "1000"], mutate=hooks)
    cid = new_id("cr")
    started(rt, pipes, b, cid)
    img = tmp_path / "img"
    p = rt("checkpoint", "--image-path", str(img), cid)
    assert p.returncode == 0, p.stderr
    flag.write_text("")
    p = pipes.run(rt.root, "restore", "--detach", "--image-path", str(img), "--bundle", str(b), cid)
    assert p.returncode != 0
    assert b"prestart hook #0" in p.stdout, p.stdout
    assert_gone(rt, cid)


def _wait_for(cond, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_bad_options(rt, tmp_path: Path) -> None:
    p = rt("checkpoint", "--manage-cgroups-mode", "bogus", "x")
    assert "manage-cgroups-mode" in one_line_error(p)
    p = rt("checkpoint", "--empty-ns", "pid", "x")
    assert "not supported" in one_line_error(p)
    p = rt("checkpoint", "--parent-path", "/abs", "x")
    assert "must be relative" in one_line_error(p)
    p = rt("checkpoint", "--image-path", str(tmp_path / "img"), "nosuch")
    assert "does not exist" in one_line_error(p)
    p = rt("--criu", "/nonexistent/criu", "restore", "--image-path", str(tmp_path), "x")
    assert "not found" in one_line_error(p)
