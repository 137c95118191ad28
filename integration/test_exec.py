"""`exec`: every flag, terminals, detach, exit statuses, signals, refusals, cgroups, namespaces."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ConsoleReceiver, new_id, run_in_pty, runtime_cmd

pytestmark = pytest.mark.root


def writable(cfg: dict) -> None:
    cfg["root"]["readonly"] = False


@contextmanager
def running(rt, bundle, mutate: Callable[[dict], None] | None = None,
            args: list[str] | None = None) -> Iterator[tuple[str, Path]]:
    """A started container running `sleep 1000` (or ``args``); force-deleted afterwards."""
    def both(cfg: dict) -> None:
        writable(cfg)
        if mutate is not None:
            mutate(cfg)

    b = bundle(args or ["sleep", "1000"], both)
    cid = new_id()
    rt("run", "-d", "--bundle", str(b), cid, check=True)
    try:
        yield cid, b
    finally:
        rt("delete", "--force", cid)


def report(rt, cid: str, *flags: str) -> dict:
    p = rt("exec", *flags, cid, "checker", "report")
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def caps(r: dict, name: str) -> int:
    return int(r["status"][name], 16)


def test_exec_joins_every_namespace_and_the_cgroup(rt, bundle) -> None:
    with running(rt, bundle) as (cid, _b):
        init = rt.state(cid)["pid"]
        r = report(rt, cid)
        for name in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
            assert r["ns"][name] == os.stat(f"/proc/{init}/ns/{name}").st_ino, name
        assert r["pid"] > 1  # pid 1 is the init: we are a second process in its pid namespace
        # a session of its own (runc): the caller's terminal is not the container's
        assert r["sid"] == r["pid"]
        assert r["cwd"] == "/"
        # the same cgroup in every hierarchy as the init (seen through the cgroup namespace)
        with open(f"/proc/{init}/cgroup") as f:
            host_view = f.read().splitlines()
        assert len(r["cgroup"].splitlines()) == len(host_view)
        # the container's process: capabilities and no_new_privs from config.json
        assert r["status"]["NoNewPrivs"] == "1"
        assert caps(r, "CapInh") == 0 and caps(r, "CapAmb") == 0
        assert r["fds"] == [0, 1, 2] or sorted(r["fds"])[:3] == [0, 1, 2]
        assert r["dumpable"] == 1


def test_exec_exit_status_and_signal(rt, bundle) -> None:
    with running(rt, bundle) as (cid, _b):
        assert rt("exec", cid, "checker", "exit", "7").returncode == 7
        assert rt("exec", cid, "checker", "kill-self", "15").returncode == 128 + 15
        assert rt("exec", cid, "true").returncode == 0


def test_exec_forwards_signals(rt, bundle) -> None:
    with running(rt, bundle) as (cid, b):
        cmd = [*runtime_cmd(), "--root", str(rt.root), "exec", cid, "checker", "trap", "/tmp/trapx"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        trap = b / "rootfs" / "tmp" / "trapx"
        deadline = time.monotonic() + 20
        while not (trap.exists() and b"ready" in trap.read_bytes()) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(20) == 0
        assert trap.read_text().split() == ["ready", str(int(signal.SIGUSR1))]


def test_exec_flags_user_groups_cwd_env_caps(rt, bundle) -> None:
    with running(rt, bundle) as (cid, _b):
        r = report(rt, cid, "--user", "1000:1001", "-g", "5", "--additional-gids", "6", "--cwd", "/tmp",
                   "-e", "FOO=bar", "--env", "PATH=/bin", "--cap", "CAP_NET_RAW", "-c", "CAP_SYS_PTRACE")
        assert (r["uid"], r["euid"], r["gid"], r["egid"]) == (1000, 1000, 1001, 1001)
        assert sorted(r["groups"]) == [5, 6]
        assert r["cwd"] == "/tmp"
        assert "FOO=bar" in r["env"] and r["env"].count("PATH=/bin") == 1
        # asked-for caps in the bounding set; a non-root uid keeps no permitted caps across
        # execve without ambient ones, and inheritable and ambient stay empty (runc)
        assert caps(r, "CapBnd") >> 13 & 1 and caps(r, "CapBnd") >> 19 & 1
        assert caps(r, "CapInh") == 0 and caps(r, "CapAmb") == 0 and caps(r, "CapPrm") == 0
        r = report(rt, cid, "--cap", "CAP_NET_RAW")
        for s in ("CapBnd", "CapPrm", "CapEff"):
            assert caps(r, s) >> 13 & 1, s
        assert caps(r, "CapInh") == 0 and caps(r, "CapAmb") == 0


def test_exec_no_new_privs_flag(rt, bundle) -> None:
    def nnp_off(cfg: dict) -> None:
        cfg["process"]["noNewPrivileges"] = False

    with running(rt, bundle, nnp_off) as (cid, _b):
        assert report(rt, cid)["status"]["NoNewPrivs"] == "0"
        assert report(rt, cid, "--no-new-privs")["status"]["NoNewPrivs"] == "1"


def test_exec_preserve_fds(rt, bundle, tmp_path: Path) -> None:
    with running(rt, bundle) as (cid, _b):
        data = tmp_path / "data"
        data.write_text("preserved\n")
        fd = os.open(data, os.O_RDONLY)
        try:
            p = rt("exec", "--preserve-fds", "1", cid, "cat", "/proc/self/fd/3", pass_fds=(3,),
                   preexec_fn=lambda: os.dup2(fd, 3))
            assert p.returncode == 0, p.stderr
            assert p.stdout == b"preserved\n"
            p = rt("exec", cid, "cat", "/proc/self/fd/3", pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
            assert p.returncode != 0  # without --preserve-fds nothing leaks in
        finally:
            os.close(fd)


def test_exec_process_file(rt, bundle, tmp_path: Path) -> None:
    with running(rt, bundle) as (cid, _b):
        proc = {"args": ["checker", "report"], "cwd": "/etc", "env": ["A=1", "PATH=/bin:/usr/bin"],
                "user": {"uid": 2, "gid": 3}, "noNewPrivileges": True}
        f = tmp_path / "process.json"
        f.write_text(json.dumps(proc))
        p = rt("exec", "--process", str(f), cid)
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        assert (r["uid"], r["gid"], r["cwd"], r["env"][0]) == (2, 3, "/etc", "A=1")
        # a non-root process with no capabilities asked for holds none
        assert caps(r, "CapEff") == 0 and caps(r, "CapPrm") == 0
        # validated like config.json: one line, exit 255, nothing started
        for bad, frag in (({"args": [], "cwd": "/"}, "args"), ({"args": ["x"], "cwd": "rel"}, "cwd"),
                          ({"args": ["x"], "cwd": "/", "user": {"uid": 4294967296}}, "uid")):
            f.write_text(json.dumps(bad))
            p = rt("exec", "-p", str(f), cid)
            err = p.stderr.decode()
            assert p.returncode == 255 and err.count("\n") == 1 and frag in err, err
            assert err.startswith("exec failed: ")
        log = [json.loads(line) for line in rt.log.read_text().splitlines()]
        assert log[-1]["level"] == "error" and log[-1]["msg"] == err.strip()


@pytest.mark.parametrize(("flags", "frag"), [
    (["--user", "4294967296"], "out of range"),
    (["--user", "0:4294967296"], "out of range"),
    (["--user", "-1"], "out of range"),
    (["--user", "root"], "bad uid"),
    (["--user", "1_000"], "invalid syntax"),
    (["--cgroup", "nosuchctl:x"], "unknown controller"),
    (["-g", "4294967296"], "out of range"),
    (["--apparmor", "x"], "apparmor"),
    (["--process-label", "x"], "selinux"),
    (["--tty", "--detach"], "cannot allocate tty if runc will detach without setting console socket"),
    (["--console-socket", "/tmp/nosuch.sock"], "cannot use console socket"),
    (["--cgroup", "a:x", "--cgroup", "a:y"], "specified multiple times"),
    (["--cgroup", "x", "--cgroup", "y"], "missing <controller>: prefix"),
    (["--cgroup", "../../escape"], "not a sub-cgroup"),
    (["--cgroup", "nosuchsub"], "no such file or directory"),
])
def test_exec_refusals(rt, bundle, flags: list[str], frag: str) -> None:
    with running(rt, bundle) as (cid, _b):
        p = rt("exec", *flags, cid, "checker", "report")
        err = p.stderr.decode()
        assert p.returncode == 255 and frag in err and err.count("\n") == 1, err
        assert p.stdout == b""
        assert rt("ps", "--format", "json", cid).stdout.strip() == f"[{rt.state(cid)['pid']}]".encode()


def test_exec_cwd_through_proc_fd_refused(rt, bundle) -> None:
    with running(rt, bundle) as (cid, _b):
        for n in range(3, 8):
            p = rt("exec", "--cwd", f"/proc/self/fd/{n}", cid, "pwd")
            out = p.stdout.decode()
            # never a directory outside the container (CVE-2024-21626's leaked cwd)
            assert p.returncode != 0 or (out.startswith("/") and "ociruntime" not in out), (n, out)


def test_exec_stopped_and_paused(rt, bundle, tmp_path: Path) -> None:
    with running(rt, bundle) as (cid, b):
        assert rt("pause", cid).returncode == 0
        p = rt("exec", cid, "true")
        assert p.returncode == 255
        assert p.stderr.decode().strip() == (
            "exec failed: cannot exec in a paused container (use --ignore-paused to override)")
        # --ignore-paused: the process joins the frozen cgroup and runs once resumed
        cmd = [*runtime_cmd(), "--root", str(rt.root), "exec", "--ignore-paused", cid, "sh", "-c",
               "echo ran > /tmp/ignored"]
        proc = subprocess.Popen(cmd)
        time.sleep(0.5)
        assert proc.poll() is None  # frozen with the container
        assert rt("resume", cid).returncode == 0
        assert proc.wait(20) == 0
        assert (b / "rootfs" / "tmp" / "ignored").read_text() == "ran\n"
        assert rt("kill", cid, "KILL").returncode == 0
        deadline = time.monotonic() + 10
        while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        p = rt("exec", cid, "true")
        assert p.returncode == 255
        assert p.stderr.decode().strip() == "exec failed: cannot exec in a stopped container"
    p = rt("exec", "nosuch-container", "true")
    assert p.returncode == 255 and b"container does not exist" in p.stderr


PR_SET_CHILD_SUBREAPER = 36


def test_exec_detach_pid_file_and_parent(rt, bundle, tmp_path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with running(rt, bundle) as (cid, _b):
        pidfile = tmp_path / "exec.pid"
        # Like conmon and the containerd shim: a subreaper collects the detached process.
        assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        try:
            p = rt("exec", "--detach", "--pid-file", str(pidfile), cid, "checker", "exit", "5")
            assert p.returncode == 0, p.stderr
            text = pidfile.read_text()
            assert text.isdigit() and not text.endswith("\n")
            pid = int(text)
            _, status = os.waitpid(pid, 0)  # our child: the runtime left nothing in between
            assert os.waitstatus_to_exitcode(status) == 5
        finally:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_exec_processes_in_ps_kill_all_and_delete(rt, bundle, tmp_path: Path) -> None:
    with running(rt, bundle) as (cid, _b):
        pidfile = tmp_path / "exec.pid"
        rt("exec", "-d", "--pid-file", str(pidfile), cid, "sleep", "1000", check=True)
        pid = int(pidfile.read_text())
        listed = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
        assert pid in listed and rt.state(cid)["pid"] in listed
        # frozen by pause with the rest of the container (a frozen task sleeps in state D)
        assert rt("pause", cid).returncode == 0
        deadline = time.monotonic() + 10
        while "State:\tD" not in Path(f"/proc/{pid}/status").read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "State:\tD" in Path(f"/proc/{pid}/status").read_text()
        assert rt("resume", cid).returncode == 0
        assert rt("kill", "--all", cid, "KILL").returncode == 0
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}")


def test_container_stopped_when_init_exits_with_exec_processes_alive(rt, bundle, tmp_path: Path) -> None:
    def host_pid(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]

    with running(rt, bundle, host_pid) as (cid, _b):
        pidfile = tmp_path / "exec.pid"
        rt("exec", "-d", "--pid-file", str(pidfile), cid, "sleep", "1000", check=True)
        pid = int(pidfile.read_text())
        init = rt.state(cid)["pid"]
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
        os.kill(init, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt.state(cid)["status"] == "stopped"
        assert os.path.exists(f"/proc/{pid}")
        # delete takes the leftover process with the cgroup
        assert rt("delete", cid).returncode == 0
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}")


def test_exec_into_user_namespace(rt, bundle) -> None:
    import shutil
    import tempfile

    # the mapped root (host uid 100000) must reach the bundle: not under pytest's 0700 tmp dir
    base = Path(tempfile.mkdtemp(prefix="ociruntime-userns-"))
    base.chmod(0o755)
    bundle.base = base
    try:
        _exec_into_user_namespace(rt, bundle)
    finally:
        shutil.rmtree(base)


def _exec_into_user_namespace(rt, bundle) -> None:
    def userns(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]

    with running(rt, bundle, userns) as (cid, _b):
        init = rt.state(cid)["pid"]
        r = report(rt, cid, "--user", "7:8")
        assert r["ns"]["user"] == os.stat(f"/proc/{init}/ns/user").st_ino
        assert (r["uid"], r["gid"]) == (7, 8)
        pidfile_pid = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
        assert len(pidfile_pid) == 1  # the report process has exited


def test_exec_sub_cgroup(rt, bundle) -> None:
    with running(rt, bundle) as (cid, _b):
        init = rt.state(cid)["pid"]
        with open(f"/proc/{init}/cgroup") as f:
            lines = [line.strip().split(":", 2) for line in f]
        made = []
        try:
            pids_line = next((ln for ln in lines if ln[1] == "pids"), None)
            assert pids_line is not None
            sub = Path("/sys/fs/cgroup/pids") / pids_line[2].lstrip("/") / "sub"
            sub.mkdir()
            made.append(sub)
            r = report(rt, cid, "--cgroup", "pids:sub")
            got = {ln.split(":", 2)[1]: ln.split(":", 2)[2] for ln in r["cgroup"].splitlines()}
            init_view = {ln[1]: ln[2] for ln in (x.split(":", 2) for x in
                         report(rt, cid)["cgroup"].splitlines())}
            assert got["pids"] == init_view["pids"].rstrip("/") + "/sub"
            assert all(v == init_view[k] for k, v in got.items() if k != "pids"), got
        finally:
            for d in made:
                for _ in range(100):
                    try:
                        d.rmdir()
                        break
                    except OSError:
                        time.sleep(0.05)


def test_exec_tty_through_console_socket(rt, bundle, tmp_path: Path) -> None:
    with running(rt, bundle) as (cid, _b):
        sock = tmp_path / "console.sock"
        recv = ConsoleReceiver(sock)
        p = rt("exec", "-d", "-t", "--console-socket", str(sock), cid, "sh", "-c",
               "tty; [ -t 0 ] && echo stdin-is-tty; id -u")
        assert p.returncode == 0, p.stderr
        recv.thread.join(20)
        assert recv.name and recv.master >= 0
        out = recv.output.decode().replace("\r", "")
        assert "/dev/pts/" in out and "stdin-is-tty" in out
        os.close(recv.master)


def test_exec_tty_foreground_without_terminal(rt, bundle) -> None:
    """runc: `exec -t` in the foreground works with a non-terminal stdin; no "\\r" is added."""
    with running(rt, bundle) as (cid, _b):
        p = rt("exec", "-t", cid, "sh", "-c", "tty; printf 'a\\nb\\n'; exit 4")
        assert p.returncode == 4, p.stderr
        assert b"\r" not in p.stdout and b"/dev/pts/" in p.stdout and b"a\nb\n" in p.stdout


def test_exec_tty_foreground_with_terminal(rt, bundle) -> None:
    with running(rt, bundle) as (cid, _b):
        cmd = [*runtime_cmd(), "--root", str(rt.root), "exec", "-t", cid, "sh", "-c",
               "stty size; read line; echo got:$line; exit 3"]
        code, out = run_in_pty(cmd, b"\n", b"hello\r")
        assert code == 3, out
        assert b"got:hello" in out


def test_exec_into_host_pid_namespace_container(rt, bundle) -> None:
    def host_pid(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]

    with running(rt, bundle, host_pid) as (cid, _b):
        r = report(rt, cid)
        assert r["ns"]["pid"] == os.stat("/proc/self/ns/pid").st_ino
        assert r["pid"] > 1


def test_exec_gets_the_containers_seccomp_filter(rt, bundle, tmp_path: Path) -> None:
    def profile(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}

    with running(rt, bundle, profile) as (cid, b):
        # the bundle changing later must not change the filter exec applies
        cfg = json.loads((b / "config.json").read_text())
        del cfg["linux"]["seccomp"]
        (b / "config.json").write_text(json.dumps(cfg))
        r = report(rt, cid)
        assert r["status"]["Seccomp"] == "2"
        p = rt("exec", cid, "mkdir", "/tmp/x")
        assert p.returncode != 0 and b"not permitted" in p.stderr


def test_exec_leaves_no_runtime_handle_for_the_container(rt, bundle, tmp_path: Path) -> None:
    """A container process scans /proc while we exec 50 times: no runtime process may be
    reachable (non-dumpable), no host runtime file writable, the runtime's files unchanged."""
    import hashlib

    launcher = Path(runtime_cmd()[0]).resolve()
    files = [launcher]
    if launcher.suffix != ".py":
        first = launcher.read_text().splitlines()[0] if launcher.stat().st_size < 4096 else ""
        if first.startswith("#!"):
            files.append(Path(first[2:].split()[0]).resolve())

    def digest() -> list[str]:
        return [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]

    before = digest()
    scan = ("while [ ! -e /tmp/stop ]; do for p in /proc/[0-9]*; do "
            "if (exec 3>>$p/exe) 2>/dev/null; then echo WRITABLE $p $(readlink $p/exe); fi; "
            "for f in $p/fd/*; do l=$(readlink $f 2>/dev/null); case $l in *ociruntime*|*python*) "
            "echo FD $f $l;; esac; done; done; done; echo scanned")
    with running(rt, bundle, args=["sh", "-c", scan + " > /tmp/scan.log 2>&1; sleep 1000"]) as (cid, b):
        for _ in range(50):
            assert rt("exec", cid, "true").returncode == 0
        (b / "rootfs" / "tmp" / "stop").write_text("")
        log = b / "rootfs" / "tmp" / "scan.log"
        deadline = time.monotonic() + 30
        while b"scanned" not in (log.read_bytes() if log.exists() else b"") and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert "scanned" in text
        assert "WRITABLE" not in text and "FD " not in text, text[:2000]
    assert digest() == before
