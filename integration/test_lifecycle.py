"""The OCI lifecycle end to end: create, state, start, kill, delete, run; pid file; signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import new_id

pytestmark = pytest.mark.root


def writable(cfg: dict) -> None:
    cfg["root"]["readonly"] = False


def wait_status(rt, cid: str, want: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = rt.state(cid)
        if st["status"] == want or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def test_full_lifecycle(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["checker", "trap", "/tmp/trap"], writable)
    cid = new_id()
    pidfile = tmp_path / "init.pid"
    p = rt("create", "--bundle", str(b), "--pid-file", str(pidfile), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"" and p.stderr == b""
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == str(b) and st["ociVersion"]
    assert set(st) >= {"ociVersion", "id", "status", "pid", "bundle", "rootfs", "created", "owner",
                       "annotations"}
    # pid file: the decimal pid, no trailing newline
    assert pidfile.read_text() == str(st["pid"])
    init = st["pid"]
    # the init waits in its namespaces, not yet running the user program
    assert os.readlink(f"/proc/{init}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert (Path(rt.root) / cid / "exec.fifo").exists()
    assert rt("start", cid).returncode == 0
    trap = b / "rootfs" / "tmp" / "trap"
    deadline = time.monotonic() + 10
    while not (trap.exists() and b"ready" in trap.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rt.state(cid)["status"] == "running"
    assert not (Path(rt.root) / cid / "exec.fifo").exists()
    # kill delivers exactly the signal asked for (by number and by name)
    assert rt("kill", cid, "USR1").returncode == 0
    st = wait_status(rt, cid, "stopped")
    assert st["status"] == "stopped" and st["pid"] == 0
    assert trap.read_text().split() == ["ready", str(int(signal.SIGUSR1))]
    p = rt("kill", cid, "15")
    assert p.returncode == 1 and b"container not running" in p.stderr
    assert rt("kill", "--all", cid, "9").returncode == 0  # --all on a stopped container succeeds
    assert rt("delete", cid).returncode == 0
    p = rt("state", cid)
    assert p.returncode == 1 and b"container does not exist" in p.stderr


def test_start_twice_and_delete_running_needs_force(rt, bundle) -> None:
    b = bundle(["sleep", "100"])
    cid = new_id()
    rt("create", "--bundle", str(b), cid, check=True)
    rt("start", cid, check=True)
    p = rt("start", cid)
    assert p.returncode == 1 and b"running" in p.stderr
    p = rt("delete", cid)
    assert p.returncode == 1 and b"not stopped" in p.stderr
    assert rt("delete", "--force", cid).returncode == 0
    assert not (Path(rt.root) / cid).exists()


def test_flags_after_the_container_id(rt, bundle) -> None:
    """runc's commands (urfave/cli v1) take their flags after the id too: `delete ID --force`."""
    cid = new_id()
    rt("run", "--bundle", str(bundle(["sleep", "100"])), cid, "--detach", check=True)
    rt("kill", cid, "KILL", "--all", check=True)
    wait_status(rt, cid, "stopped")
    rt("delete", cid, "--force", check=True)
    assert not (Path(rt.root) / cid).exists()


def test_delete_created_container(rt, bundle) -> None:
    cid = new_id()
    rt("create", "--bundle", str(bundle(["true"])), cid, check=True)
    pid = rt.state(cid)["pid"]
    assert rt("delete", cid).returncode == 0
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_kill_default_sigterm(rt, bundle) -> None:
    b = bundle(["checker", "trap", "/tmp/trap"], writable)
    cid = new_id()
    rt("run", "-d", "--bundle", str(b), cid, check=True)
    trap = b / "rootfs" / "tmp" / "trap"
    deadline = time.monotonic() + 10
    while not (trap.exists() and b"ready" in trap.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.02)
    rt("kill", cid, check=True)
    wait_status(rt, cid, "stopped")
    assert trap.read_text().split() == ["ready", str(int(signal.SIGTERM))]
    rt("delete", cid, check=True)


@pytest.mark.parametrize(("args", "code"), [(["true"], 0), (["sh", "-c", "exit 7"], 7)])
def test_run_foreground_exit_status(rt, bundle, args, code) -> None:
    cid = new_id()
    p = rt("run", "--bundle", str(bundle(args)), cid)
    assert p.returncode == code, p.stderr
    assert not (Path(rt.root) / cid).exists()


def test_run_passes_stdio_through(rt, bundle) -> None:
    p = rt("run", "--bundle", str(bundle(["sh", "-c", "cat; echo out; echo err >&2"])), new_id(),
           input=b"from stdin\n")
    assert p.returncode == 0
    assert p.stdout == b"from stdin\nout\n"
    assert p.stderr == b"err\n"


def test_duplicate_id_leaves_first_untouched(rt, bundle) -> None:
    cid = new_id()
    rt("create", "--bundle", str(bundle(["true"])), cid, check=True)
    first = rt.state(cid)
    p = rt("create", "--bundle", str(bundle(["true"])), cid)
    assert p.returncode == 1 and b"already exists" in p.stderr
    assert rt.state(cid) == first
    rt("delete", cid, check=True)


def test_list(rt, bundle) -> None:
    cid = new_id()
    rt("create", "--bundle", str(bundle(["true"])), cid, check=True)
    table = rt("list", check=True).stdout.decode().splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert table[1].split()[0] == cid and table[1].split()[2] == "created"
    js = json.loads(rt("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in js] == [cid]
    assert rt("list", "-q", check=True).stdout.decode().split() == [cid]
    rt("delete", cid, check=True)


def test_error_is_one_json_line_in_log(rt) -> None:
    p = rt("state", "nonexistent")
    assert p.returncode == 1
    assert p.stderr.decode().strip() == "container does not exist"
    lines = rt.log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and entry["msg"] == "container does not exist" and entry["time"]


def test_version_and_unknown_command(rt) -> None:
    p = rt("--version", log_json=False)
    first, second = p.stdout.decode().splitlines()[:2]
    assert first.startswith("ociruntime version ") and second == "spec: 1.3.0"
    p = rt("checkpoint", "--help")
    # podman takes exit 0 as "checkpoint supported": only when there is a criu to run.
    assert (p.returncode == 0) == (shutil.which("criu") is not None)
    p = rt("--criu", "/nonexistent/criu", "checkpoint", "--help")
    assert p.returncode != 0


def test_run_foreground_killed_by_signal(rt, bundle, tmp_path: Path) -> None:
    """run exits 128+N when the container dies by signal N (sent here from outside: pid 1 of a
    pid namespace cannot be killed by a signal it has no handler for from inside)."""
    import subprocess

    cid = new_id()
    b = bundle(["sleep", "100"])
    from conftest import runtime_cmd

    proc = subprocess.Popen([*runtime_cmd(), "--root", str(rt.root), "run", "--bundle", str(b), cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            p = rt("state", cid)
            if p.returncode == 0 and json.loads(p.stdout)["status"] == "running":
                break
            time.sleep(0.05)
        rt("kill", cid, "KILL", check=True)
        assert proc.wait(20) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SUBREAPER_CALLER = r"""
import ctypes, json, subprocess, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER, like conmon and the shim
cmd = sys.argv[1:]
subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL)
root, cid = cmd[cmd.index("--root") + 1], cmd[-1]
state = json.loads(subprocess.run(cmd[:cmd.index("--root")] + ["--root", root, "state", cid],
                                  capture_output=True, check=True).stdout)
with open(f"/proc/{state['pid']}/stat") as f:
    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
print(json.dumps({"me": __import__("os").getpid(), "init_ppid": ppid, "status": state["status"]}))
"""


def test_init_is_reparented_to_the_calling_subreaper(rt, bundle) -> None:
    """When create exits, no helper of ours sits between the caller and the init."""
    import subprocess
    import sys

    from conftest import runtime_cmd

    cid = new_id()
    cmd = [*runtime_cmd(), "--root", str(rt.root), "create", "--bundle", str(bundle(["true"])), cid]
    out = subprocess.run([sys.executable, "-c", SUBREAPER_CALLER, *cmd], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["status"] == "created"
    assert r["init_ppid"] == r["me"]
    rt("delete", cid, check=True)


IMPORT_PROBE = """
import json, sys
from ociruntime.cli import main as m
sys.argv = ["ociruntime", *sys.argv[1:]]
m.main()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_frequent_commands_on_a_real_container_import_nothing_heavy(rt, bundle) -> None:
    import subprocess
    import sys
    import tempfile

    heavy = ("jsonschema", "pyroute2", "pyseccomp", "seccomp", "prctl", "referencing")

    def mods(*args: str) -> list[str]:
        # stderr to a file, not a pipe: the created container inherits it
        with tempfile.TemporaryFile() as err:
            subprocess.run([sys.executable, "-I", "-c", IMPORT_PROBE, "--root", str(rt.root), *args],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            return json.loads(err.read().decode().strip().splitlines()[-1])

    def mutate(cfg: dict) -> None:  # a seccomp profile and hooks make create import more
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}
        cfg["hooks"] = {"poststart": [{"path": "/bin/true"}], "poststop": [{"path": "/bin/true"}]}

    cid = new_id()
    created = mods("create", "--bundle", str(bundle(["sleep", "100"], mutate)), cid)
    assert "ociruntime.lifecycle.create" in created  # the probe sees imports
    for args in (["state", cid], ["start", cid], ["state", cid], ["kill", cid, "KILL"], ["delete", cid]):
        bad = [m for m in mods(*args) if m.split(".")[0] in heavy]
        assert bad == [], f"{args[0]} imports {bad}"
    assert not (rt.root / cid).exists()


def test_start_returns_once_the_process_runs(rt, bundle, tmp_path: Path) -> None:
    """`start` reads exec.fifo to EOF (the init holds it until execve), so poststart hooks see
    the user process, even behind a slow startContainer hook (runc's order)."""
    out = tmp_path / "comm"

    record = f"pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); cat /proc/$pid/comm > {out}"

    def mutate(cfg: dict) -> None:
        cfg["hooks"] = {
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 0.5"]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", record]}],
        }

    b = bundle(["sleep", "1000"], mutate)
    cid = new_id()
    rt("create", "--bundle", str(b), cid, check=True)
    try:
        assert rt("start", cid).returncode == 0
        assert out.read_text().strip() == "sleep"
    finally:
        rt("delete", "--force", cid)


def test_every_wait_has_a_deadline(rt, bundle) -> None:
    """A child that hangs makes create/start/exec fail with one line, not hang the caller."""
    env = dict(os.environ, OCIRUNTIME_WAIT_TIMEOUT="2")

    def hang_create(cfg: dict) -> None:
        cfg["hooks"] = {"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "100"]}]}

    t0 = time.monotonic()
    p = rt("create", "--bundle", str(bundle(["true"], hang_create)), new_id(), env=env)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1, err
    assert "timed out after 2s waiting for the container init" in err
    assert time.monotonic() - t0 < 30
    assert [d for d in os.listdir(rt.root) if not d.startswith(".")] == []

    def hang_start(cfg: dict) -> None:
        cfg["hooks"] = {"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "100"]}]}

    cid = new_id()
    rt("create", "--bundle", str(bundle(["true"], hang_start)), cid, check=True)
    p = rt("start", cid, env=env)
    assert p.returncode == 1 and b"timed out after 2s" in p.stderr, p.stderr
    # the init took the start signal: the container counts as started from now on
    assert rt.state(cid)["status"] == "running"
    assert rt("start", cid).returncode == 1
    assert rt("delete", "--force", cid).returncode == 0

    cid = new_id()
    rt("run", "-d", "--bundle", str(bundle(["sleep", "1000"])), cid, check=True)
    try:
        assert rt("pause", cid).returncode == 0
        p = rt("exec", "--ignore-paused", cid, "true", env=env)
        assert p.returncode == 255 and b"timed out after 2s" in p.stderr, p.stderr
        assert rt("resume", cid).returncode == 0
    finally:
        rt("delete", "--force", cid)
