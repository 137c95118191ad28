"""Tests for the in-container checker (integration/checker/checker.c) and bundles/build.py.

The checker is built once per session with ``gcc -static`` and run on the host, where Python can
set up the facts it must report (umask, rlimits, signal masks, scheduling, fds, ...) in the child
with ``preexec_fn`` and compare them with the JSON it prints.  The bundle builder is checked by
building bundles in temporary directories and, when runc is installed, running them with runc.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import pty
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ociruntime.linux.libc import LIBC, SYS_IOPRIO_SET

REPO = Path(__file__).resolve().parents[1]
CHECKER_SRC = REPO / "integration/checker/checker.c"
RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)

RLIMIT_NAMES = [
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
]  # fmt: skip


def _load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundles_build", REPO / "bundles/build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


@pytest.fixture(scope="session")
def checker() -> Iterator[Path]:
    """The checker built into a world-readable temp dir (tests also run it as nobody)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    outdir = Path(tempfile.mkdtemp(prefix="ocirt-checker-", dir="/tmp"))
    outdir.chmod(0o755)
    binary = outdir / "checker"
    cmd = ["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(CHECKER_SRC)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    try:
        if res.returncode != 0 and "cannot find -lc" in res.stderr:
            pytest.skip("static libc (libc6-dev) not installed")
        assert res.returncode == 0, res.stderr
        yield binary
    finally:
        shutil.rmtree(outdir)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A temp dir under /tmp that other users can enter (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ocirt-checker-t-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def run(checker: Path, *args: str, **kw: Any) -> tuple[subprocess.CompletedProcess[bytes], Any]:
    """Run the checker; return the process and its parsed JSON stdout."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.run([str(checker), *args], capture_output=True, **kw)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(b"\n")
    return proc, json.loads(proc.stdout)


def report(checker: Path, preexec: Callable[[], None] | None = None, **kw: Any) -> dict[str, Any]:
    """Run ``checker report`` with Popen so the child's pid is known; return the report."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    with subprocess.Popen([str(checker), "report"], stdout=subprocess.PIPE, preexec_fn=preexec, **kw) as p:
        out, _ = p.communicate()
    assert p.returncode == 0
    data = json.loads(out)
    data["_popen_pid"] = p.pid
    return data


def _status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


# ---------------------------------------------------------------------------------- report --


def test_report_default_process(checker: Path, tmp_path: Path) -> None:
    env = {"A": "1", "QUOTE": 'x"y\\z\n\t\x01', "LAST": "é"}
    data = report(checker, cwd=tmp_path, env=env)
    assert data["pid"] == data["_popen_pid"]
    assert data["ppid"] == os.getpid()
    ruid, euid, suid = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    assert (data["uid"], data["euid"], data["suid"]) == (ruid, euid, suid)
    assert (data["gid"], data["egid"], data["sgid"]) == (rgid, egid, sgid)
    assert sorted(data["groups"]) == sorted(os.getgroups())
    assert data["cwd"] == str(tmp_path)
    assert data["env"] == [f"{k}={v}" for k, v in env.items()]
    uts = os.uname()
    assert data["hostname"] == uts.nodename
    assert data["domainname"] == Path("/proc/sys/kernel/domainname").read_text().strip()
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp"):
        assert data["status"][key] == _status_field(key), key
    assert set(data["status"]) == {
        "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
        "NoNewPrivs", "Seccomp", "SigIgn", "SigBlk", "SigCgt",
    }  # fmt: skip
    assert data["ns"] == {n: os.stat(f"/proc/self/ns/{n}").st_ino for n in os.listdir("/proc/self/ns")}
    assert data["uid_map"] == Path("/proc/self/uid_map").read_text()
    assert data["gid_map"] == Path("/proc/self/gid_map").read_text()
    assert data["cgroup"] == Path("/proc/self/cgroup").read_text()
    assert data["tty"] is False
    assert data["dumpable"] == 1
    assert data["sched_policy"] == os.sched_getscheduler(0)
    assert data["affinity"] == sorted(os.sched_getaffinity(0))
    assert data["personality"] == LIBC.personality(ctypes.c_ulong(0xFFFFFFFF))


def test_report_rlimits_match_getrlimit(checker: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (123, hard))

    data = report(checker, lower_nofile)
    assert list(data["rlimits"]) == RLIMIT_NAMES
    assert RLIMIT_NAMES.index("RLIMIT_NOFILE") == resource.RLIMIT_NOFILE
    for number, name in enumerate(RLIMIT_NAMES):  # resource numbers 0..15, in this order
        want = [(-1 if v == resource.RLIM_INFINITY else v) for v in resource.getrlimit(number)]
        if name == "RLIMIT_NOFILE":
            want = [123, -1 if hard == resource.RLIM_INFINITY else hard]
        assert data["rlimits"][name] == want, name
    assert soft != 123


def test_report_configured_process_attributes(checker: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    ioprio = (2 << 13) | 5  # IOPRIO_CLASS_BE, level 5 (ioprio_set(2))

    def setup() -> None:
        os.umask(0o027)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
        Path("/proc/self/oom_score_adj").write_text("500")
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        os.sched_setaffinity(0, {cpu})
        LIBC.syscall(SYS_IOPRIO_SET, 1, 0, ioprio)
        LIBC.personality(0x0040000)  # ADDR_NO_RANDOMIZE
        LIBC.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS

    data = report(checker, setup, start_new_session=True)
    assert data["umask"] == 0o027
    assert int(data["status"]["SigIgn"], 16) & (1 << (signal.SIGUSR1 - 1))
    assert int(data["status"]["SigBlk"], 16) == 1 << (signal.SIGUSR2 - 1)
    assert data["oom_score_adj"] == 500
    assert data["sched_policy"] == os.SCHED_BATCH
    assert data["affinity"] == [cpu]
    assert data["ioprio"] == ioprio
    assert data["personality"] & 0x0040000
    assert data["no_new_privs"] == 1
    assert data["status"]["NoNewPrivs"] == "1"
    assert data["sid"] == data["pgid"] == data["pid"]


def test_report_fds_and_targets(checker: Path) -> None:
    r, w = os.pipe()
    try:
        data = report(checker, pass_fds=(w,))
        inode = os.fstat(w).st_ino
    finally:
        os.close(r)
        os.close(w)
    assert data["fds"] == sorted({0, 1, 2, w})
    assert set(data["fd_targets"]) == {str(fd) for fd in data["fds"]}
    assert data["fd_targets"]["0"] == "/dev/null"
    assert data["fd_targets"][str(w)] == f"pipe:[{inode}]"


def test_report_tty_and_mountinfo(checker: Path) -> None:
    master, slave = pty.openpty()
    try:
        data = report(checker, stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    assert data["tty"] is True
    # Same mount namespace: the line for "/" must be identical to ours.
    ours = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if line.split()[4] == "/"]
    theirs = [line for line in data["mountinfo"].splitlines() if line.split()[4] == "/"]
    assert theirs == ours != []


# ------------------------------------------------------------------------ per-path commands --


def test_stat(checker: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    reg.write_text("x")
    reg.chmod(0o4751)
    os.mkfifo(tmp_path / "fifo", 0o640)
    (tmp_path / "link").symlink_to("reg")
    (tmp_path / "dir").mkdir(mode=0o1777)
    (tmp_path / "dir").chmod(0o1777)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    sock.close()
    names = ["reg", "fifo", "link", "dir", "sock"]
    _, data = run(checker, "stat", *(str(tmp_path / n) for n in names), "/dev/null", str(tmp_path / "nope"))
    types = {"reg": "reg", "fifo": "fifo", "link": "lnk", "dir": "dir", "sock": "sock"}
    for name in names:
        st = os.lstat(tmp_path / name)
        got = data[str(tmp_path / name)]
        assert got == {
            "exists": True, "type": types[name], "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid, "major": 0, "minor": 0,
        }  # fmt: skip
    assert data[str(tmp_path / "reg")]["mode"] == 0o4751
    assert data["/dev/null"]["type"] == "chr"
    assert (data["/dev/null"]["major"], data["/dev/null"]["minor"]) == (1, 3)
    assert data[str(tmp_path / "nope")] == {"exists": False, "errno": 2}


def test_access_as_root(checker: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep")
    os.mkfifo(tmp_path / "fifo")
    paths = [str(tmp_path / n) for n in ("f", "fifo", "missing")] + [str(tmp_path)]
    _, data = run(checker, "access", *paths)
    assert data[paths[0]] == {"read": 0, "write": 0}
    # O_NONBLOCK: a FIFO without a reader refuses writers with ENXIO instead of blocking.
    assert data[paths[1]] == {"read": 0, "write": 6}
    assert data[paths[2]] == {"read": 2, "write": 2}
    assert data[paths[3]] == {"read": 0, "write": 0}
    assert (tmp_path / "f").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["f", "fifo"]  # the probe file was removed


@pytest.mark.root
def test_access_denied_as_nobody(checker: Path, world_dir: Path) -> None:
    secret = world_dir / "secret"
    secret.write_text("s")
    secret.chmod(0o600)
    (world_dir / "ro").mkdir()
    (world_dir / "ro").chmod(0o555)
    _, data = run(checker, "access", str(secret), str(world_dir / "ro"), user=65534, group=65534)
    assert data[str(secret)] == {"read": 13, "write": 13}
    assert data[str(world_dir / "ro")] == {"read": 0, "write": 13}


def test_read_escapes_json(checker: Path, tmp_path: Path) -> None:
    raw = b'a\x01\xff\xc3\xa9"\\\n\t\xed\xa0\x80\xf0\x9f\x98\x80\xc0\xaf\x7f'
    (tmp_path / "f").write_bytes(raw)
    proc, data = run(checker, "read", str(tmp_path / "f"), str(tmp_path), str(tmp_path / "missing"))
    assert proc.stdout.isascii() is False  # valid UTF-8 is passed through, not escaped
    # Invalid bytes (lone 0xff, a UTF-16 surrogate, an overlong "/") come back as U+00XX.
    assert data[str(tmp_path / "f")] == 'a\x01\xffé"\\\n\t\xed\xa0\x80\U0001f600\xc0\xaf\x7f'
    assert data[str(tmp_path)] == {"errno": 21}
    assert data[str(tmp_path / "missing")] == {"errno": 2}


def test_sysctl(checker: Path) -> None:
    _, data = run(checker, "sysctl", "kernel.ostype", "kernel.hostname", "net.ipv4.ip_forward", "no.such")
    assert data["kernel.ostype"] == "Linux"
    assert data["kernel.hostname"] == os.uname().nodename
    assert data["net.ipv4.ip_forward"] == Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    assert data["no.such"] == {"errno": 2}


def test_write_and_cat(checker: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("old content that is longer")
    _, data = run(checker, "write", str(target), "new\ntext")
    assert data == {"errno": 0}
    assert target.read_text() == "new\ntext"
    _, data = run(checker, "write", str(tmp_path / "no/such/file"), "x")
    assert data == {"errno": 2}
    blob = bytes(range(256)) * 3
    target.write_bytes(blob)
    proc = subprocess.run([str(checker), "cat", str(target)], capture_output=True)
    assert (proc.returncode, proc.stdout) == (0, blob)
    proc = subprocess.run([str(checker), "cat", str(tmp_path / "missing")], capture_output=True)
    assert proc.returncode == 1 and proc.stdout == b""


# ------------------------------------------------------------------------ process commands --


def test_exit_sleep_and_usage(checker: Path) -> None:
    assert subprocess.run([str(checker), "exit", "7"]).returncode == 7
    assert subprocess.run([str(checker), "exit", "0"]).returncode == 0
    proc = subprocess.run([str(checker), "sleep", "0.01"], capture_output=True)
    assert (proc.returncode, proc.stdout) == (0, b"")
    for bad in (["bogus"], [], ["exit"], ["write", "/tmp/x"], ["kill-self", "NOPE"]):
        assert subprocess.run([str(checker), *bad], capture_output=True).returncode == 2, bad


def test_kill_self(checker: Path) -> None:
    def ignore_term() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    assert subprocess.run([str(checker), "kill-self", "TERM"]).returncode == -signal.SIGTERM
    assert subprocess.run([str(checker), "kill-self", "9"]).returncode == -signal.SIGKILL
    assert subprocess.run([str(checker), "kill-self", "SIGUSR1"]).returncode == -signal.SIGUSR1
    # An inherited SIG_IGN must not keep the process alive.
    proc = subprocess.run([str(checker), "kill-self", "TERM"], preexec_fn=ignore_term)
    assert proc.returncode == -signal.SIGTERM


def _wait_ready(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while not (path.exists() and path.read_text() == "ready\n"):
        assert proc.poll() is None, "trap exited before it was ready"
        assert time.monotonic() < deadline, "trap never wrote ready"
        time.sleep(0.005)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGUSR2, signal.SIGRTMIN + 3, 64])
def test_trap_records_signal(checker: Path, tmp_path: Path, sig: int) -> None:
    def block_it() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})  # the checker must unblock it

    out = tmp_path / "trap"
    with subprocess.Popen([str(checker), "trap", str(out)], preexec_fn=block_it) as proc:
        try:
            _wait_ready(out, proc)
            os.kill(proc.pid, sig)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert out.read_text() == f"ready\n{int(sig)}\n"


def test_stdout_failure_exits_1(checker: Path) -> None:
    with open("/dev/full", "wb") as full:
        assert subprocess.run([str(checker), "report"], stdout=full).returncode == 1


# ----------------------------------------------------------------------- bundles/build.py --


def test_elf_interpreter_detection() -> None:
    if not build.BUSYBOX.is_file():
        pytest.skip("busybox-static not installed")
    assert build.elf_interpreter(build.BUSYBOX) is False
    assert build.elf_interpreter(Path("/bin/ls")) is True


def test_elf_interpreter_rejects_non_elf(tmp_path: Path) -> None:
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(build.BundleError, match="not an ELF"):
        build.elf_interpreter(tmp_path / "script")


def test_build_bundle_layout(checker: Path, tmp_path: Path) -> None:
    if not build.BUSYBOX.is_file():
        pytest.skip("busybox-static not installed")
    config_path = build.build_bundle(
        tmp_path / "b", checker=checker, args=["checker", "report"], terminal=True
    )
    rootfs = tmp_path / "b/rootfs"
    assert config_path == tmp_path / "b/config.json"
    config = json.loads(config_path.read_text())
    assert config["process"]["args"] == ["checker", "report"]
    assert config["process"]["terminal"] is True
    assert "uidMappings" not in config["linux"]
    assert build.elf_interpreter(rootfs / "bin/busybox") is False
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert (rootfs / "bin/checker").read_bytes() == checker.read_bytes()
    assert stat.S_IMODE((rootfs / "bin/checker").stat().st_mode) == 0o755
    for d, mode in {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700, "dev": 0o755, "home": 0o755}.items():
        assert stat.S_IMODE((rootfs / d).stat().st_mode) == mode, d
    for d in ("proc", "sys", "etc", "run"):
        assert (rootfs / d).is_dir()
    passwd = (rootfs / "etc/passwd").read_text()
    assert "root:x:0:0:" in passwd and ":65534:65534:" in passwd and "user:x:1000:1000:" in passwd
    groups = {
        line.split(":")[0]: int(line.split(":")[2]) for line in (rootfs / "etc/group").read_text().split()
    }
    assert groups == {"root": 0, "tty": 5, "wheel": 10, "user": 1000, "nogroup": 65534}
    assert (rootfs / "etc/resolv.conf").read_text() == ""
    assert (rootfs / "etc/hostname").is_file() and (rootfs / "etc/hosts").is_file()


def test_build_bundle_rootless_and_defaults(tmp_path: Path) -> None:
    if not build.BUSYBOX.is_file():
        pytest.skip("busybox-static not installed")
    config = json.loads(build.build_bundle(tmp_path / "b", rootless=True).read_text())
    assert config["process"]["args"] == ["sh"]
    assert config["process"]["terminal"] is False
    assert config["linux"]["uidMappings"][0]["hostID"] == os.geteuid()
    assert not (tmp_path / "b/rootfs/bin/checker").exists()


def test_build_bundle_cache_makes_independent_copies(checker: Path, tmp_path: Path) -> None:
    if not build.BUSYBOX.is_file():
        pytest.skip("busybox-static not installed")
    cache = tmp_path / "cache"
    build.build_bundle(tmp_path / "one", rootfs_cache=cache, checker=checker)
    build.build_bundle(tmp_path / "two", rootfs_cache=cache)
    assert len([p for p in cache.iterdir() if p.name.startswith("rootfs-")]) == 1
    one, two = tmp_path / "one/rootfs", tmp_path / "two/rootfs"
    assert os.stat(one / "bin/busybox").st_nlink == 1  # copies, not hard links
    assert os.stat(one / "bin/busybox").st_ino != os.stat(two / "bin/busybox").st_ino
    (one / "etc/hostname").write_text("changed\n")
    assert (two / "etc/hostname").read_text() == "ociruntime\n"
    assert (one / "bin/checker").exists() and not (two / "bin/checker").exists()
    assert stat.S_IMODE(two.joinpath("tmp").stat().st_mode) == 0o1777
    assert sorted(os.listdir(one / "bin")) == sorted([*os.listdir(two / "bin"), "checker"])


def test_build_bundle_errors(tmp_path: Path) -> None:
    with pytest.raises(build.BundleError, match="apt-get install busybox-static"):
        build.build_bundle(tmp_path / "a", busybox=tmp_path / "no-busybox")
    with pytest.raises(build.BundleError, match=r"dynamically linked.*apt-get install busybox-static"):
        build.build_bundle(tmp_path / "b", busybox=Path("/bin/ls"))
    (tmp_path / "c/rootfs").mkdir(parents=True)
    with pytest.raises(build.BundleError, match="already exists"):
        build.build_bundle(tmp_path / "c")


def test_build_cli(tmp_path: Path) -> None:
    if not build.BUSYBOX.is_file():
        pytest.skip("busybox-static not installed")
    cmd = [
        sys.executable,
        str(REPO / "bundles/build.py"),
        str(tmp_path / "b"),
        "--args",
        "sh",
        "-c",
        "exit 3",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "b/config.json").read_text())
    assert config["process"]["args"] == ["sh", "-c", "exit 3"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1 and "already exists" in proc.stderr


# ------------------------------------------------------------------------- with real runc --


@pytest.fixture
def runc_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A private runc --root and a container id unique to this test; deletes the container after."""
    if RUNC is None:
        pytest.skip("runc not installed")
    if not build.BUSYBOX.is_file():
        pytest.skip("busybox-static not installed")
    root = tmp_path / "runc-root"
    cid = f"ocirt-test-checker-{os.getpid()}"
    yield root, cid
    subprocess.run([RUNC, "--root", str(root), "delete", "--force", cid], capture_output=True)


@pytest.mark.root
def test_runc_runs_built_bundle(tmp_path: Path, runc_root: tuple[Path, str]) -> None:
    root, cid = runc_root
    build.build_bundle(tmp_path / "b", args=["true"])
    cmd = [RUNC, "--root", str(root), "run", "--bundle", str(tmp_path / "b"), cid]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.root
def test_checker_report_inside_runc_container(
    checker: Path, tmp_path: Path, runc_root: tuple[Path, str]
) -> None:
    root, cid = runc_root
    config = json.loads(
        build.build_bundle(tmp_path / "b", checker=checker, args=["checker", "report"]).read_text()
    )
    cmd = [RUNC, "--root", str(root), "run", "--bundle", str(tmp_path / "b"), cid]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["pid"] == 1
    assert data["hostname"] == config["hostname"]
    assert data["cwd"] == "/"
    assert set(config["process"]["env"]) <= set(data["env"])
    assert data["rlimits"]["RLIMIT_NOFILE"] == [1024, 1024]
    assert data["no_new_privs"] == 1
    # AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10) and nothing else.
    assert int(data["status"]["CapBnd"], 16) == (1 << 29) | (1 << 5) | (1 << 10)
    assert data["ns"]["pid"] != os.stat("/proc/self/ns/pid").st_ino
    assert data["ns"]["net"] != os.stat("/proc/self/ns/net").st_ino
