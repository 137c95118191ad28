"""Each config feature, checked from inside the container by the static checker."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import new_id

pytestmark = pytest.mark.root


def run_checker(rt, bundle, args: list[str], mutate=None, **kw) -> dict:
    b = bundle(["checker", *args], mutate)
    p = rt("run", "--bundle", str(b), new_id(), **kw)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def report(rt, bundle, mutate=None) -> dict:
    return run_checker(rt, bundle, ["report"], mutate)


def ns_of(pid: int | str, name: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{name}").st_ino


def test_default_bundle(rt, bundle) -> None:
    r = report(rt, bundle)
    assert r["pid"] == 1
    assert r["hostname"] == "ociruntime"
    assert r["uid"] == 0 and r["gid"] == 0
    assert r["cwd"] == "/"
    # HOME added from the image's /etc/passwd, as runc does when process.env lacks it
    assert r["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
                        "HOME=/root"]
    # runc's default capability set: AUDIT_WRITE(29) KILL(5) NET_BIND_SERVICE(10)
    want = (1 << 29) | (1 << 5) | (1 << 10)
    for key in ("CapBnd", "CapPrm", "CapEff"):
        assert int(r["status"][key], 16) == want, key
    # ambient caps need the inheritable set too, which runc's default leaves empty: not raised
    assert int(r["status"]["CapInh"], 16) == 0 and int(r["status"]["CapAmb"], 16) == 0
    assert r["status"]["NoNewPrivs"].strip() == "1"
    # every signal disposition and the mask are reset before exec (CPython ignores SIGPIPE)
    assert int(r["status"]["SigIgn"], 16) == 0 and int(r["status"]["SigBlk"], 16) == 0
    assert r["rlimits"]["RLIMIT_NOFILE"] == [1024, 1024]
    # new namespaces differ from the host's
    for name in ("pid", "net", "ipc", "uts", "mnt"):
        assert r["ns"][name] != ns_of("self", name), name
    # only stdio reaches the container
    assert sorted(r["fds"]) == [0, 1, 2]


def _mounts(r: dict) -> dict[str, tuple[str, str, str]]:
    """mount point -> (per-mount options, fstype, super options) from mountinfo text."""
    out = {}
    for line in r["mountinfo"].splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        fstype, _src, sopts = right.split()[:3]
        out[f[4]] = (f[5], fstype, sopts)
    return out


def test_mounts_and_options(rt, bundle, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "file").write_text("hostdata")
    single = tmp_path / "single"
    single.write_text("one file")

    def mutate(cfg: dict) -> None:
        cfg["mounts"] += [
            {"destination": "/data", "type": "bind", "source": str(src),
             "options": ["rbind", "ro", "nosuid"]},
            {"destination": "/etc/single", "type": "bind", "source": str(single), "options": ["bind"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
             "options": ["nodev", "noexec", "size=1m", "mode=755"]},
        ]

    r = run_checker(rt, bundle, ["report"], mutate)
    m = _mounts(r)
    assert m["/"][0].startswith("ro")  # root.readonly in the default config
    assert m["/proc"][1] == "proc"
    assert m["/dev"][1] == "tmpfs" and "nosuid" in m["/dev"][0]
    assert m["/dev/pts"][1] == "devpts" and "newinstance" not in m["/dev/pts"][0]
    assert m["/sys"][1] == "sysfs" and m["/sys"][0].startswith("ro")
    assert m["/dev/shm"][1] == "tmpfs" and m["/dev/mqueue"][1] == "mqueue"
    assert m["/data"][0].startswith("ro") and "nosuid" in m["/data"][0]
    assert m["/etc/single"][0].startswith("rw")
    opts = m["/scratch"][0].split(",")
    assert "nodev" in opts and "noexec" in opts and m["/scratch"][1] == "tmpfs"
    assert "size=1024k" in m["/scratch"][2] and "mode=755" in m["/scratch"][2]
    # cgroup mounts are read-only without a cgroup namespace
    for mp, (o, _fstype, _) in m.items():
        if mp.startswith("/sys/fs/cgroup"):
            assert o.startswith("ro"), mp


def test_files_seen_through_mounts(rt, bundle, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "file").write_text("hostdata")

    def mutate(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                              "options": ["rbind", "ro"]})

    r = run_checker(rt, bundle, ["read", "/data/file"], mutate)
    assert r["/data/file"] == "hostdata"
    r = run_checker(rt, bundle, ["access", "/data/file"], mutate)
    assert r["/data/file"]["read"] == 0 and r["/data/file"]["write"] == 30  # EROFS


def test_masked_and_readonly_paths(rt, bundle) -> None:
    r = run_checker(rt, bundle, ["stat", "/proc/kcore", "/proc/timer_list", "/proc/acpi", "/sys/firmware"])
    for p in ("/proc/kcore", "/proc/timer_list"):
        if r[p]["exists"]:
            assert r[p]["type"] == "chr" and (r[p]["major"], r[p]["minor"]) == (1, 3), p
    r = run_checker(rt, bundle, ["access", "/proc/sys/kernel/domainname"])
    assert r["/proc/sys/kernel/domainname"]["write"] == 30  # EROFS: read-only path
    r = run_checker(rt, bundle, ["read", "/proc/timer_list"])
    assert r["/proc/timer_list"] == ""  # masked by /dev/null


def test_default_devices_and_symlinks(rt, bundle) -> None:
    names = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
             "/dev/ptmx", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr"]
    r = run_checker(rt, bundle, ["stat", *names])
    want = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7), "/dev/random": (1, 8),
            "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}
    for path, (major, minor) in want.items():
        assert r[path]["type"] == "chr" and (r[path]["major"], r[path]["minor"]) == (major, minor), path
        assert r[path]["mode"] & 0o777 == 0o666, path
    for link in ("/dev/ptmx", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr"):
        assert r[link]["type"] == "lnk", link


def test_configured_devices(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["devices"] = [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8612,
             "uid": 0, "gid": 0},
            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o600,
             "uid": 1000, "gid": 1000},
        ]
        cfg["linux"]["resources"]["devices"] += [
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        ]

    r = run_checker(rt, bundle, ["stat", "/dev/fuse", "/dev/net/tun"], mutate)
    assert r["/dev/fuse"]["type"] == "chr" and (r["/dev/fuse"]["major"], r["/dev/fuse"]["minor"]) == (10, 229)
    assert r["/dev/fuse"]["mode"] & 0o777 == 0o644  # 8612 = 0o20644: type bits stripped
    tun = r["/dev/net/tun"]
    got = (tun["major"], tun["minor"], tun["uid"], tun["gid"], tun["mode"] & 0o777)
    assert got == (10, 200, 1000, 1000, 0o600)


def test_process_user_env_cwd_umask_rlimits(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        p = cfg["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 5], "umask": 0o027}
        p["env"] = ["PATH=/bin", "FOO=bar baz", "EMPTY="]
        p["cwd"] = "/home/user/work"
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
        p["oomScoreAdj"] = 123

    r = report(rt, bundle, mutate)
    assert (r["uid"], r["euid"], r["gid"], r["egid"]) == (1000, 1000, 1000, 1000)
    assert sorted(r["groups"]) == [5, 10]
    assert r["env"] == ["PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/home/user"]
    assert r["cwd"] == "/home/user/work"
    assert r["umask"] == 0o027
    assert r["rlimits"]["RLIMIT_NOFILE"] == [100, 200] and r["rlimits"]["RLIMIT_CORE"] == [0, 0]
    assert r["oom_score_adj"] == 123
    # execve as a non-root user keeps only ambient capabilities (capabilities(7)); runc's
    # default config has no inheritable set, so none can be ambient
    assert int(r["status"]["CapEff"], 16) == 0 and int(r["status"]["CapPrm"], 16) == 0
    assert int(r["status"]["CapBnd"], 16) == (1 << 29) | (1 << 5) | (1 << 10)


def test_capabilities_all_sets(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["process"]["capabilities"] = {
            "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_NET_RAW"],
            "effective": ["CAP_CHOWN"],
            "inheritable": ["CAP_NET_RAW"],
            "ambient": ["CAP_NET_RAW"],
        }
        cfg["process"]["noNewPrivileges"] = False

    r = report(rt, bundle, mutate)
    s = {k: int(v, 16) for k, v in r["status"].items() if k.startswith("Cap")}
    assert s["CapBnd"] == (1 << 0) | (1 << 13) | (1 << 5)
    assert s["CapInh"] == 1 << 13 and s["CapAmb"] == 1 << 13
    # execve as root: effective and permitted become (bounding ∩ ...) per capabilities(7) for uid 0
    assert s["CapPrm"] & ~s["CapBnd"] == 0
    assert r["status"]["NoNewPrivs"].strip() == "0"


def test_hostname_domainname_sysctl(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["hostname"] = "box"
        cfg["domainname"] = "example.org"
        cfg["linux"]["sysctl"] = {"net.core.somaxconn": "1234", "kernel.shmmni": "2048"}

    r = report(rt, bundle, mutate)
    assert r["hostname"] == "box" and r["domainname"] == "example.org"
    r = run_checker(rt, bundle, ["sysctl", "net.core.somaxconn", "kernel.shmmni"], mutate)
    assert r == {"net.core.somaxconn": "1234", "kernel.shmmni": "2048"}


def test_join_namespace_by_path(rt, bundle) -> None:
    import subprocess

    holder = subprocess.Popen(["unshare", "--uts", "--ipc", "--net", "sleep", "60"])
    try:
        import time

        deadline = time.monotonic() + 5
        while ns_of(holder.pid, "uts") == ns_of("self", "uts") and time.monotonic() < deadline:
            time.sleep(0.01)

        def mutate(cfg: dict) -> None:
            for ns in cfg["linux"]["namespaces"]:
                if ns["type"] in ("uts", "ipc", "network"):
                    ns["path"] = f"/proc/{holder.pid}/ns/{'net' if ns['type'] == 'network' else ns['type']}"
            cfg.pop("hostname", None)

        r = report(rt, bundle, mutate)
        for name in ("uts", "ipc", "net"):
            assert r["ns"][name] == ns_of(holder.pid, name), name
        assert r["ns"]["pid"] != ns_of("self", "pid")
    finally:
        holder.kill()
        holder.wait()


def test_user_namespace_mappings(rt, bundle) -> None:
    # the mapped root (host uid 100000) must be able to reach the bundle: not under pytest's
    # private (0700) temporary directory
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ociruntime-userns-"))
    base.chmod(0o755)
    bundle.base = base

    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        # sysfs cannot be mounted in a user ns that does not own the net ns? it can: new netns.

    try:
        r = report(rt, bundle, mutate)
    finally:
        shutil.rmtree(base)
    assert r["uid_map"].split() == ["0", "100000", "65536"]
    assert r["gid_map"].split() == ["0", "100000", "65536"]
    assert r["uid"] == 0
    assert r["ns"]["user"] != ns_of("self", "user")


def test_join_user_namespace_by_path_becomes_its_root(rt, bundle) -> None:
    """Joined by path, the namespace need not map our host uid: the runtime becomes its root
    (uid 0 there) before mounting, as runc does, so the container sets up and runs as root."""
    import shutil
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ociruntime-userns-"))
    base.chmod(0o755)
    bundle.base = base
    # A user namespace where our host uid 0 is not mapped: maps written from outside, as root.
    holder = subprocess.Popen(["unshare", "--user", "sleep", "100"])
    try:
        deadline = time.monotonic() + 5
        while ns_of(holder.pid, "user") == ns_of("self", "user"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{holder.pid}/{name}").write_text("0 100000 65536\n")

        def mutate(cfg: dict) -> None:
            cfg["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{holder.pid}/ns/user"})

        r = report(rt, bundle, mutate)
        assert r["ns"]["user"] == ns_of(holder.pid, "user")
        assert (r["uid"], r["gid"]) == (0, 0)
        assert r["uid_map"].split() == ["0", "100000", "65536"]
    finally:
        holder.kill()
        holder.wait()
        shutil.rmtree(base)


def test_cgroup_joined(rt, bundle) -> None:
    cg = f"/ociruntime-test/{new_id()}"

    def mutate(cfg: dict) -> None:
        cfg["linux"]["cgroupsPath"] = cg

    r = report(rt, bundle, mutate)
    lines = r["cgroup"].splitlines()
    assert any(line.endswith(":" + cg) for line in lines if ":memory" in line or ":pids" in line), lines


def test_preserve_fds_and_leaked_fds(rt, bundle, tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.write_text("k")
    leak = tmp_path / "leak"
    leak.write_text("l")
    fd_keep = os.open(keep, os.O_RDONLY)
    fd_leak = os.open(leak, os.O_RDONLY)

    def child_fds() -> None:  # in the runtime's process only: never touch pytest's own fds
        os.dup2(fd_keep, 3)
        os.dup2(fd_leak, 4)

    try:
        b = bundle(["checker", "report"])
        p = rt("run", "--preserve-fds", "1", "--bundle", str(b), new_id(), close_fds=False,
               preexec_fn=child_fds)
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        assert sorted(r["fds"]) == [0, 1, 2, 3]
        assert r["fd_targets"]["3"].endswith("/keep")
    finally:
        os.close(fd_keep)
        os.close(fd_leak)


def test_hooks_order_and_state(rt, bundle, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\nread -r state\necho \"$1 $state\" >> {log}\n")
    script.chmod(0o755)
    # createContainer and startContainer run inside the container's mount namespace: give them a
    # path that exists there too.
    incontainer = "/bin/sh"

    def mutate(cfg: dict) -> None:
        def h(kind: str) -> dict:
            return {"path": str(script), "args": ["hook.sh", kind], "env": ["A=1"]}
        cfg["root"]["readonly"] = False
        cfg["hooks"] = {"prestart": [h("prestart")], "createRuntime": [h("createRuntime")],
                        "createContainer": [h("createContainer")],
                        "startContainer": [{"path": incontainer, "args": ["sh", "-c", "cat > /tmp/sc"]}],
                        "poststart": [h("poststart")], "poststop": [h("poststop")]}

    b = bundle(["true"], mutate)
    cid = new_id()
    rt("run", "--bundle", str(b), cid, check=True)
    lines = log.read_text().splitlines()
    kinds = [line.split(" ", 1)[0] for line in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert [s["status"] for s in states] == ["creating", "creating", "creating", "running", "stopped"]
    assert all(s["id"] == cid and s["bundle"] == str(b) for s in states)
    assert states[0]["pid"] > 0
    sc = json.loads((b / "rootfs" / "tmp" / "sc").read_text())
    assert sc["status"] == "created" and sc["id"] == cid


def test_readonly_rootfs_false(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["root"]["readonly"] = False

    r = run_checker(rt, bundle, ["access", "/tmp", "/etc"], mutate)
    assert r["/tmp"]["write"] == 0 and r["/etc"]["write"] == 0


def test_exec_not_found(rt, bundle) -> None:
    p = rt("run", "--bundle", str(bundle(["nonexistent-binary"])), new_id())
    assert p.returncode == 1
    assert b"executable file not found in $PATH" in p.stderr


def test_mode_of_state_dir(rt, bundle) -> None:
    cid = new_id()
    rt("create", "--bundle", str(bundle(["true"])), cid, check=True)
    assert stat.S_IMODE(os.stat(rt.root / cid).st_mode) == 0o700
    rt("delete", cid, check=True)


def _ignore_all_signals() -> None:
    """preexec: the caller ignores every signal it can, glibc-reserved 32/33 included."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    class KAct(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                    ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]

    ign = KAct(1, 0, None, 0)  # SIG_IGN
    for sig in range(1, 65):
        if sig not in (9, 19):
            libc.syscall(13, sig, ctypes.byref(ign), None, 8)


def test_signals_reset_even_if_caller_ignores_them(rt, bundle) -> None:
    b = bundle(["checker", "report"])
    p = rt("run", "--bundle", str(b), new_id(), preexec_fn=_ignore_all_signals)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert int(r["status"]["SigIgn"], 16) == 0 and int(r["status"]["SigBlk"], 16) == 0


@pytest.mark.skipif(not Path("/sys/fs/cgroup/systemd").is_dir(), reason="no name=systemd v1 hierarchy here")
@pytest.mark.parametrize("cgroupns", [False, True], ids=["host-cgroupns", "private-cgroupns"])
def test_named_v1_hierarchy_keeps_the_host_directory_name(rt, bundle, cgroupns: bool) -> None:
    """runc mounts name=systemd at /sys/fs/cgroup/systemd (the host's name): systemd and
    docker-in-docker look there.  Co-mounted controllers keep theirs too (cpu,cpuacct)."""
    host = sorted(p.name for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())

    def mutate(cfg: dict) -> None:
        if cgroupns:
            cfg["linux"]["namespaces"].append({"type": "cgroup"})

    paths = [f"/sys/fs/cgroup/{name}" for name in host] + ["/sys/fs/cgroup/name=systemd"]
    r = run_checker(rt, bundle, ["stat", *paths], mutate)
    assert [p for p in paths[:-1] if not r[p]["exists"]] == []
    assert not r["/sys/fs/cgroup/name=systemd"]["exists"]
    r = run_checker(rt, bundle, ["read", "/proc/self/mountinfo"], mutate)
    line = next(ln for ln in r["/proc/self/mountinfo"].splitlines() if " /sys/fs/cgroup/systemd " in ln)
    assert "name=systemd" in line.split(" - ")[1]
