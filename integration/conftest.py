"""Fixtures for the root integration tests: the runtime command, bundles, and the leak check.

Every test gets its own ``--root`` state directory.  The autouse ``no_leaks`` fixture compares the
host before and after each test: no new mount in our mount table, no new cgroup directory in any
hierarchy, no leftover state directory, no process left in a pid namespace other than ours.
"""

from __future__ import annotations

import array
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKER = REPO / "integration" / "checker" / "checker"
SHARED = REPO.parent / "shared"

_spec = importlib.util.spec_from_file_location("bundles_build", REPO / "bundles" / "build.py")
assert _spec and _spec.loader
bundles_build = importlib.util.module_from_spec(_spec)
sys.modules["bundles_build"] = bundles_build
_spec.loader.exec_module(bundles_build)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root")
        for item in items:
            item.add_marker(skip)


def runtime_cmd() -> list[str]:
    """The runtime under test: $OCIRUNTIME, else this interpreter running the checkout."""
    env = os.environ.get("OCIRUNTIME")
    return env.split() if env else [sys.executable, "-I", "-m", "ociruntime"]


def runtime_sys_path() -> list[str]:
    """The module search path the runtime under test really uses (launcher or -m)."""
    cmd = runtime_cmd()
    probe = "import json, sys; print(json.dumps(sys.path))"
    if len(cmd) == 1:  # an installed launcher: run its own set-up lines, not entry()
        text = Path(cmd[0]).read_text().splitlines()
        interp = text[0][2:].split()
        setup = "\n".join(line for line in text[1:] if "entry" not in line)
        out = subprocess.run([*interp, "-c", setup + "\n" + probe], capture_output=True, text=True,
                             check=True).stdout
    else:
        out = subprocess.run([*cmd[:2], "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


class Runtime:
    """Run ociruntime with a private --root; results are CompletedProcess objects."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log

    def __call__(self, *args: str, check: bool = False, input: bytes | None = None,
                 timeout: float = 60, log_json: bool = True, **kw: object) -> subprocess.CompletedProcess:
        cmd = [*runtime_cmd(), "--root", str(self.root)]
        if log_json:
            cmd += ["--log", str(self.log), "--log-format", "json"]
        cmd += list(args)
        # Output goes to files, not pipes: a created container inherits our stdio, so a pipe
        # would not reach EOF until the container exits.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            stdin = subprocess.DEVNULL
            if input is not None:
                stdin = tempfile.TemporaryFile()
                stdin.write(input)
                stdin.seek(0)
            try:
                rc = subprocess.run(cmd, stdin=kw.pop("stdin", stdin), stdout=out, stderr=err,
                                    timeout=timeout, **kw).returncode  # type: ignore[call-overload]
            finally:
                if input is not None:
                    stdin.close()  # type: ignore[union-attr]
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(cmd, rc, out.read(), err.read())
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.decode()}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    root = tmp_path / "state"
    return Runtime(root, tmp_path / "log.json")


@pytest.fixture(scope="session")
def rootfs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rootfs-cache")


@pytest.fixture(scope="session")
def checker() -> Path:
    if not CHECKER.exists():
        subprocess.run(["gcc", "-static", "-O2", "-o", str(CHECKER), str(CHECKER) + ".c"], check=True)
    return CHECKER


class BundleFactory:
    def __init__(self, base: Path, cache: Path, checker: Path) -> None:
        self.base = base
        self.cache = cache
        self.checker = checker
        self.n = 0

    def __call__(self, args: list[str] | None = None, mutate=None) -> Path:
        self.n += 1
        dest = self.base / f"bundle{self.n}"
        cfg_path = bundles_build.build_bundle(dest, checker=self.checker, args=args or ["true"],
                                              rootfs_cache=self.cache)
        if mutate is not None:
            cfg = json.loads(Path(cfg_path).read_text())
            mutate(cfg)  # in place
            Path(cfg_path).write_text(json.dumps(cfg))
        return dest


@pytest.fixture
def bundle(tmp_path: Path, rootfs_cache: Path, checker: Path) -> BundleFactory:
    return BundleFactory(tmp_path, rootfs_cache, checker)


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class ConsoleReceiver:
    """A console-socket client endpoint like conmon's: receive the pty master, read it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.master = -1
        self.name = b""
        self.output = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, ctype, data in anc:
            if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        self.name = msg
        self.master = fds[0]
        conn.close()
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk


def run_in_pty(cmd: list[str], when: bytes, reply: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Run ``cmd`` on a new terminal; type ``reply`` once ``when`` shows up; (exit code, output)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        out += chunk
        if not sent and when in out:
            os.write(fd, reply)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


# ---- the leak check ---------------------------------------------------------------------------

def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def _cgroup_dirs() -> set[str]:
    out = set()
    for top in Path("/sys/fs/cgroup").iterdir():
        if not top.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(top):
            for d in dirnames:
                out.add(os.path.join(dirpath, d))
    return out


def _foreign_pidns_procs() -> set[int]:
    mine = os.readlink("/proc/self/ns/pid")
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != mine:
                out.add(int(name))
        except OSError:
            continue
    return out


def leaks_since(before: tuple[set[str], set[str], set[int]], state_root: Path | None) -> list[str]:
    problems = []
    for _ in range(50):  # processes and cgroups of a just-killed container need a moment
        mounts = _mounts() - before[0]
        cgroups = _cgroup_dirs() - before[1]
        procs = _foreign_pidns_procs() - before[2]
        if not (mounts or cgroups or procs):
            break
        time.sleep(0.1)
    if mounts:
        problems.append(f"mounts left: {sorted(mounts)[:5]}")
    if cgroups:
        problems.append(f"cgroups left: {sorted(cgroups)[:5]}")
    if procs:
        problems.append(f"processes left: {sorted(procs)[:5]}")
    if state_root is not None and state_root.exists():
        # Nothing but container directories may ever be in a --root (dockerd lists each entry).
        left = [p.name for p in state_root.iterdir()]
        if left:
            problems.append(f"state left in {state_root}: {left}")
    return problems


def _cleanup(state_root: Path) -> None:
    """Force-delete whatever a failing test left, so one failure does not cascade."""
    if not state_root.exists():
        return
    for d in state_root.iterdir():
        if d.name.startswith("."):
            continue
        subprocess.run([*runtime_cmd(), "--root", str(state_root), "delete", "--force", d.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    before = (_mounts(), _cgroup_dirs(), _foreign_pidns_procs())
    yield
    state_root = tmp_path / "state"
    problems = leaks_since(before, state_root)
    if problems:
        _cleanup(state_root)
        if state_root.exists():
            shutil.rmtree(state_root, ignore_errors=True)
        pytest.fail("leak check: " + "; ".join(problems))
