"""Less common config features, each checked from inside: personality, scheduler, ioPriority,
execCPUAffinity, time and cgroup namespaces, --no-pivot, keyrings, LISTEN_FDS, propagation,
recursive mount attributes, hook timeouts, console socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import new_id, run_in_pty, runtime_cmd

pytestmark = pytest.mark.root


def run_checker(rt, bundle, args: list[str], mutate=None, extra: tuple[str, ...] = (), **kw) -> dict:
    b = bundle(["checker", *args], mutate)
    p = rt("run", *extra, "--bundle", str(b), new_id(), **kw)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_personality_scheduler_ioprio_affinity(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["personality"] = {"domain": "LINUX32"}
        cfg["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
        cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
        cfg["process"]["execCPUAffinity"] = {"initial": "0", "final": "0"}

    r = run_checker(rt, bundle, ["report"], mutate)
    assert r["personality"] & 0xFF == 0x0008  # PER_LINUX32
    assert r["sched_policy"] == 3  # SCHED_BATCH
    assert r["ioprio"] == (2 << 13) | 6
    assert r["affinity"] == [0]


def test_time_namespace_offsets(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 86400 * 365, "nanosecs": 0}}

    r = run_checker(rt, bundle, ["read", "/proc/self/timens_offsets"], mutate)
    assert "monotonic" in r["/proc/self/timens_offsets"]
    assert str(86400 * 365) in r["/proc/self/timens_offsets"]
    r = run_checker(rt, bundle, ["report"], mutate)
    assert r["ns"]["time"] != os.stat("/proc/self/ns/time").st_ino


def test_cgroup_namespace_shows_own_cgroup_as_root(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
        cfg["linux"]["cgroupsPath"] = f"/ociruntime-test/{new_id()}"

    r = run_checker(rt, bundle, ["report"], mutate)
    assert r["ns"]["cgroup"] != os.stat("/proc/self/ns/cgroup").st_ino
    for line in r["cgroup"].splitlines():
        assert line.rsplit(":", 1)[1] == "/", line


def test_no_pivot(rt, bundle) -> None:
    r = run_checker(rt, bundle, ["report"], extra=("--no-pivot",))
    roots = [line.split()[4] for line in r["mountinfo"].splitlines()]
    assert "/" in roots and r["pid"] == 1


def test_session_keyring(rt, bundle) -> None:
    """A session keyring named after the container (runc's "_ses.<id>"); none with the flag."""
    b = bundle(["true"])
    with_ring, without = new_id(), new_id()
    rt("create", "--bundle", str(b), with_ring, check=True)
    rt("create", "--no-new-keyring", "--bundle", str(b), without, check=True)
    try:
        keys = Path("/proc/keys").read_text()
        assert f"_ses.{with_ring}:" in keys
        assert f"_ses.{without}:" not in keys
    finally:
        rt("delete", with_ring, check=True)
        rt("delete", without, check=True)


def test_listen_fds_passed_through(rt, bundle, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fd = sock.fileno()
    b = bundle(["checker", "report"])
    cmd = [*runtime_cmd(), "--root", str(rt.root), "run", "--bundle", str(b), new_id()]

    def activation() -> None:
        # in the runtime's process, just before exec: fd 3 and LISTEN_PID naming it (systemd)
        os.dup2(fd, 3)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = "1"

    p = subprocess.run(cmd, close_fds=False, preexec_fn=activation, capture_output=True, timeout=60)
    sock.close()
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert sorted(r["fds"]) == [0, 1, 2, 3]
    assert r["fd_targets"]["3"].startswith("socket:")
    assert "LISTEN_FDS=1" in r["env"] and "LISTEN_PID=1" in r["env"]


def test_rootfs_propagation_and_recursive_attrs(rt, bundle, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)

    def mutate(cfg: dict) -> None:
        cfg["linux"]["rootfsPropagation"] = "private"
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                              "options": ["rbind", "rro", "rnosuid", "rprivate"]})

    r = run_checker(rt, bundle, ["report"], mutate)
    by_mp = {line.split()[4]: line for line in r["mountinfo"].splitlines()}
    data = by_mp["/data"].split()
    assert data[5].startswith("ro") and "nosuid" in data[5]
    # private propagation: no "shared:" or "master:" tag on the root mount
    root_fields = by_mp["/"].split(" - ")[0].split()[6:]
    assert not any(f.startswith(("shared:", "master:")) for f in root_fields)


def test_hook_timeout_fails_create_cleanly(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}

    p = rt("create", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1
    assert b"error running createRuntime hook #0: hook ran past specified timeout of 1.0s" in p.stderr


def test_console_socket(rt, bundle, tmp_path: Path) -> None:
    import array

    path = tmp_path / "console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def mutate(cfg: dict) -> None:
        cfg["process"]["terminal"] = True
        cfg["process"]["consoleSize"] = {"height": 30, "width": 100}

    b = bundle(["sh", "-c", "stty size; tty; ls -l /dev/console | cut -c1"], mutate)
    cid = new_id()
    p = rt("create", "--bundle", str(b), "--console-socket", str(path), cid)
    assert p.returncode == 0, p.stderr
    conn, _ = listener.accept()
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(4 * fds.itemsize))
    for _level, _type, data in anc:
        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    assert msg and len(fds) == 1
    master = fds[0]
    rt("start", cid, check=True)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    conn.close()
    listener.close()
    lines = out.decode().replace("\r", "").split()
    assert lines[:2] == ["30", "100"]
    assert lines[2].startswith("/dev/pts/")
    assert lines[3] == "c"  # /dev/console is the pts (a char device), bind-mounted
    rt("delete", "--force", cid, check=True)


def test_run_foreground_terminal_without_socket(rt, bundle) -> None:
    """`run` attached to a terminal, no --console-socket: the runtime proxies the pty itself."""

    def mutate(cfg: dict) -> None:
        cfg["process"]["terminal"] = True

    b = bundle(["sh", "-c", "tty; read line; echo got:$line; exit 3"], mutate)
    cmd = [*runtime_cmd(), "--root", str(rt.root), "run", "--bundle", str(b), new_id()]
    code, out = run_in_pty(cmd, b"/dev/pts/", b"hello\r")
    assert code == 3, out
    assert b"/dev/pts/" in out and b"got:hello" in out


def test_run_terminal_without_tty_proxies_without_cr(rt, bundle) -> None:
    """runc: foreground `run` with terminal: true works when stdin is not a terminal, and the
    output keeps its "\n" (ONLCR cleared on the pty)."""
    def mutate(cfg: dict) -> None:
        cfg["process"]["terminal"] = True

    p = rt("run", "--bundle", str(bundle(["sh", "-c", "tty; printf 'a\\nb\\n'; exit 5"], mutate)), new_id())
    assert p.returncode == 5, p.stderr
    assert b"/dev/pts/" in p.stdout and b"a\nb\n" in p.stdout and b"\r" not in p.stdout


def test_detached_terminal_without_socket_refused(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["process"]["terminal"] = True

    p = rt("run", "-d", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert p.returncode == 1 and b"console socket" in p.stderr


@pytest.mark.parametrize(("prop", "tag"), [("shared", "shared:"), ("rshared", "shared:"),
                                           ("unbindable", "unbindable"), ("runbindable", "unbindable"),
                                           ("private", None), ("slave", None), ("rslave", None)])
def test_rootfs_propagation_applied_to_new_root(rt, bundle, prop: str, tag: str | None) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["rootfsPropagation"] = prop

    r = run_checker(rt, bundle, ["report"], mutate)
    root = next(line for line in r["mountinfo"].splitlines() if line.split()[4] == "/")
    optional = root.split(" - ")[0].split()[6:]
    if tag is None:
        assert not any(f.startswith(("shared:", "unbindable")) for f in optional), root
    else:
        assert any(f.startswith(tag) for f in optional), root


def test_cwd_only_root_can_enter_still_works_for_a_user(rt, bundle) -> None:
    """runc chdirs while still root and retries as the user only on EACCES/EPERM."""
    def mutate(cfg: dict) -> None:
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
        cfg["process"]["cwd"] = "/rootonly"

    b = bundle(["sh", "-c", "pwd; ls . >/dev/null 2>&1 || echo cannot-list"], mutate)
    d = b / "rootfs" / "rootonly"
    d.mkdir()
    d.chmod(0o700)
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == ["/rootonly", "cannot-list"]
    # exec does the same
    cid = new_id()
    b2 = bundle(["sleep", "1000"])
    (b2 / "rootfs" / "rootonly").mkdir()
    (b2 / "rootfs" / "rootonly").chmod(0o700)
    rt("run", "-d", "--bundle", str(b2), cid, check=True)
    try:
        p = rt("exec", "--user", "1000", "--cwd", "/rootonly", cid, "pwd")
        assert (p.returncode, p.stdout) == (0, b"/rootonly\n"), p.stderr
    finally:
        rt("delete", "--force", cid)


def test_stdio_given_to_the_process_user(rt, bundle) -> None:
    """runc's fixStdioPermissions: fds 0-2 are chowned to the process uid (gid kept) before the
    user switch, so a non-root process can use them; /dev/null is left alone."""
    def mutate(cfg: dict) -> None:
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}

    p = rt("run", "--bundle", str(bundle(
        ["sh", "-c", "stat -L -c '%u %g' /proc/self/fd/0 /proc/self/fd/1"], mutate)), new_id())
    assert p.returncode == 0, p.stderr
    stdin_owner, stdout_owner = p.stdout.decode().splitlines()
    assert stdin_owner == "0 0"  # /dev/null: never chowned
    assert stdout_owner == "1000 0"  # our temporary file: now the user's, group kept
    assert os.stat("/dev/null").st_uid == 0


def test_dev_null_stdio_reopened_in_the_container(rt, bundle) -> None:
    """runc's reOpenDevNull: stdio that is the host's /dev/null (here a read-only stdin, as
    containerd's shim gives a CRI container) becomes the container's own, opened read-write."""
    script = "grep ^flags: /proc/self/fdinfo/0; stat -L -c %d:%i /proc/self/fd/0 /dev/null"
    with open("/dev/null", "rb") as null:
        p = rt("run", "--bundle", str(bundle(["sh", "-c", script])), new_id(), stdin=null)
    assert p.returncode == 0, p.stderr
    _, flags, stdin, own = p.stdout.decode().split()
    assert int(flags, 8) & 3 == os.O_RDWR
    assert stdin == own
    host = os.stat("/dev/null")
    assert own != f"{host.st_dev}:{host.st_ino}"


@pytest.mark.parametrize(("env", "user", "home"), [
    ([], 0, "/root"), ([], 1000, "/home/user"), ([], 4242, "/"),
    (["HOME=/custom"], 1000, "/custom"), (["HOME="], 1000, "/home/user")])
def test_home_from_the_images_passwd(rt, bundle, env: list[str], user: int, home: str) -> None:
    """runc's prepareEnv: HOME, when unset or empty, comes from the container's /etc/passwd
    ("/" for an unknown uid); exec does the same."""
    def mutate(cfg: dict) -> None:
        cfg["process"]["env"] = ["PATH=/bin", *env]
        cfg["process"]["user"] = {"uid": user, "gid": user}

    p = rt("run", "--bundle", str(bundle(["sh", "-c", "echo $HOME; env | grep -c ^HOME="], mutate)),
           new_id())
    assert (p.returncode, p.stdout.decode().split()) == (0, [home, "1"]), p.stderr
    cid = new_id()
    rt("run", "-d", "--bundle", str(bundle(["sleep", "1000"], mutate)), cid, check=True)
    try:
        p = rt("exec", cid, "sh", "-c", "echo $HOME")
        assert (p.returncode, p.stdout.decode().strip()) == (0, home), p.stderr
    finally:
        rt("delete", "--force", cid)


def test_home_lookup_never_hangs_on_a_fifo_passwd(rt, bundle) -> None:
    b = bundle(["sh", "-c", "echo $HOME"], lambda cfg: cfg["process"].update(env=["PATH=/bin"]))
    passwd = b / "rootfs" / "etc" / "passwd"
    passwd.unlink()
    os.mkfifo(passwd)
    p = rt("run", "--bundle", str(b), new_id(), timeout=30)
    assert (p.returncode, p.stdout) == (0, b"/\n"), p.stderr
