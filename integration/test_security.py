"""Hostile images and sloppy callers (SECURITY.md): each attack class has a black-box test.

A createContainer hook runs in the container's mount namespace after the mounts exist and before
pivot_root, so it can make exactly the change a racing attacker would make.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import new_id, runtime_sys_path

pytestmark = pytest.mark.root

MARKER_CODE = "open({path!r}, 'w').write('pwned')\n"


@pytest.fixture
def host_dir():
    d = Path(tempfile.mkdtemp(prefix="ociruntime-host-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def writable(cfg: dict) -> None:
    cfg["root"]["readonly"] = False


def hook_script(tmp: Path, body: str) -> str:
    script = tmp / f"hook-{new_id()}.sh"
    script.write_text("#!/bin/sh\nset -e\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_planted_python_modules_never_run(rt, bundle) -> None:
    """Every sys.path location of the runtime's interpreter gets hostile modules in the image."""
    b = bundle(["checker", "report"], writable)
    rootfs = b / "rootfs"
    code = MARKER_CODE.format(path="/PWNED")
    for entry in runtime_sys_path():
        if not entry.startswith("/") or entry.endswith(".zip"):
            continue
        d = rootfs / entry.lstrip("/")
        (d / "encodings").mkdir(parents=True, exist_ok=True)
        for name in ("json", "os", "signal", "subprocess", "select", "struct", "traceback", "codecs",
                     "locale", "warnings", "linecache", "tokenize", "_strptime", "sitecustomize"):
            (d / f"{name}.py").write_text(code)
        for enc in ("__init__", "cp1252", "latin_1", "ascii", "utf_8", "idna", "cp437", "aliases"):
            (d / "encodings" / f"{enc}.py").write_text(code)

    def hooks(cfg: dict) -> None:
        cfg["hooks"] = {"startContainer": [{"path": "/bin/true"}]}

    hooks_cfg = json.loads((b / "config.json").read_text())
    hooks(hooks_cfg)
    (b / "config.json").write_text(json.dumps(hooks_cfg))
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr
    assert not (rootfs / "PWNED").exists()
    # and an error path in the init (its message formatting must not import either)
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["args"] = ["/nonexistent"]
    (b / "config.json").write_text(json.dumps(cfg))
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 1 and b"/nonexistent" in p.stderr
    assert not (rootfs / "PWNED").exists()


def test_hostile_caller_environment_and_cwd(rt, bundle, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "MARKER"
    for name in ("json", "os", "signal", "socket", "ociruntime", "sitecustomize", "usercustomize"):
        (evil / f"{name}.py").write_text(MARKER_CODE.format(path=str(marker)))
    (evil / "startup.py").write_text(MARKER_CODE.format(path=str(marker)))
    env = {**os.environ, "PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "startup.py"),
           "PYTHONWARNINGS": "error", "PYTHONINSPECT": "1", "SECRET_HOST_VAR": "leak"}
    b = bundle(["checker", "report"])
    p = rt("run", "--bundle", str(b), new_id(), cwd=str(evil), env=env)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()
    r = json.loads(p.stdout)
    assert r["env"] == [*json.loads((b / "config.json").read_text())["process"]["env"], "HOME=/root"]


def test_resolv_conf_symlink_to_host(rt, bundle, host_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "resolv.conf"
    src.write_text("nameserver 127.0.0.1\n")

    def mutate(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/etc/resolv.conf", "type": "bind", "source": str(src),
                              "options": ["bind", "ro"]})

    b = bundle(["checker", "read", "/etc/resolv.conf"], mutate)
    target = b / "rootfs" / "etc" / "resolv.conf"
    target.unlink()
    target.symlink_to(host_dir / "x")
    p = rt("run", "--bundle", str(b), new_id())
    assert list(host_dir.iterdir()) == []
    if p.returncode == 0:
        assert "127.0.0.1" in json.loads(p.stdout)["/etc/resolv.conf"]


def test_dev_symlink_to_host(rt, bundle, host_dir: Path) -> None:
    def mutate(cfg: dict) -> None:
        cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]

    b = bundle(["true"], mutate)
    (b / "rootfs" / "dev").rmdir()
    (b / "rootfs" / "dev").symlink_to(host_dir)
    rt("run", "--bundle", str(b), new_id())
    assert list(host_dir.iterdir()) == []


def test_proc_symlink_refused(rt, bundle) -> None:
    b = bundle(["true"])
    (b / "rootfs" / "proc").rmdir()
    (b / "rootfs" / "proc").symlink_to("/x")
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1 and b"/proc" in p.stderr


@pytest.mark.parametrize("dest", ["/proc", "/proc/self/attr", "/proc/sys/kernel"])
def test_tmpfs_over_proc_refused(rt, bundle, dest: str) -> None:
    def mutate(cfg: dict) -> None:
        cfg["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs"})

    p = rt("run", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1 and b"proc" in p.stderr


def test_sysctl_decoy_not_written(rt, bundle, tmp_path: Path) -> None:
    """CVE-2025-52881: a decoy bound over the rootfs procfs file must not receive the write."""
    decoy = tmp_path / "decoy"
    decoy.write_text("untouched\n")
    script = hook_script(tmp_path, 'state=$(cat)\n'
                                   'mount --bind "$DECOY" "$ROOTFS/proc/sys/net/core/somaxconn"')

    def mutate(cfg: dict) -> None:
        cfg["linux"]["sysctl"] = {"net.core.somaxconn": "4321"}
        cfg["hooks"] = {"createContainer": [{"path": script, "env": [f"DECOY={decoy}",
                                                                      f"ROOTFS={cfg['root']['path']}"]}]}

    b = bundle(["checker", "sysctl", "net.core.somaxconn"], mutate)
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"]["createContainer"][0]["env"][1] = f"ROOTFS={b / 'rootfs'}"
    (b / "config.json").write_text(json.dumps(cfg))
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr
    assert decoy.read_text() == "untouched\n"
    # the decoy really was in place: the container reads it through its own /proc
    assert json.loads(p.stdout)["net.core.somaxconn"] == "untouched"


def test_fake_dev_null_for_masking(rt, bundle, tmp_path: Path) -> None:
    """CVE-2025-31133: /dev/null swapped for a symlink to a procfs file before masking."""
    script = hook_script(tmp_path, 'cat >/dev/null\nrm -f "$ROOTFS/dev/null"\n'
                                   'ln -s /proc/sys/kernel/hostname "$ROOTFS/dev/null"')
    b = bundle(["checker", "stat", "/proc/timer_list"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {"createContainer": [{"path": script, "env": [f"ROOTFS={b / 'rootfs'}"]}]}
    (b / "config.json").write_text(json.dumps(cfg))
    hostname = Path("/proc/sys/kernel/hostname").read_text()
    p = rt("run", "--bundle", str(b), new_id())
    assert Path("/proc/sys/kernel/hostname").read_text() == hostname
    if p.returncode == 0:
        st = json.loads(p.stdout)["/proc/timer_list"]
        assert st["type"] == "chr" and (st["major"], st["minor"]) == (1, 3)
    else:
        assert p.stderr.count(b"\n") == 1 and b"/dev/null" in p.stderr and b"hook" not in p.stderr


@pytest.mark.parametrize("n", range(3, 16))
def test_cwd_through_proc_fd_stays_inside(rt, bundle, n: int) -> None:
    """CVE-2024-21626: cwd=/proc/self/fd/N must fail or stay inside the container."""
    def mutate(cfg: dict) -> None:
        cfg["process"]["cwd"] = f"/proc/self/fd/{n}"

    p = rt("run", "--bundle", str(bundle(["checker", "report"], mutate)), new_id())
    if p.returncode == 0:
        r = json.loads(p.stdout)
        assert r["cwd"].startswith("/") and "unreachable" not in r["cwd"]
    else:
        assert p.stderr.count(b"\n") == 1


def test_caller_leaked_fd_absent(rt, bundle) -> None:
    fd = os.open("/etc/hostname", os.O_RDONLY)
    try:
        p = rt("run", "--bundle", str(bundle(["checker", "report"])), new_id(), close_fds=False,
               preexec_fn=lambda: os.dup2(fd, 9))  # `exec 9</etc/hostname` in the caller
        assert p.returncode == 0, p.stderr
        assert sorted(json.loads(p.stdout)["fds"]) == [0, 1, 2]
    finally:
        os.close(fd)


def test_uid_truncation_rejected(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["process"]["user"]["uid"] = 4294967296

    p = rt("run", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert p.returncode == 1 and b"uid" in p.stderr


def test_cgroup_mounts_readonly_inside(rt, bundle) -> None:
    p = rt("run", "--bundle", str(bundle(["sh", "-c", "mkdir /sys/fs/cgroup/memory/x 2>&1; echo $?"])),
           new_id())
    assert p.returncode == 0
    assert b"Read-only file system" in p.stdout


_CGROUP_OPTS = "grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo | cut -d' ' -f6"


def _rw_cgroup(caps: list[str]):
    def mutate(cfg: dict) -> None:
        for mnt in cfg["mounts"]:
            if mnt["type"] == "cgroup":
                mnt["options"] = [o for o in mnt.get("options", []) if o != "ro"] + ["rw"]
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind] = caps
    return mutate


def test_rw_cgroup_mount_without_cgroupns_stays_read_only_unless_privileged(rt, bundle) -> None:
    """No cgroup namespace: a config's "rw" cgroup mount is forced read-only (stricter than runc)
    unless the process holds CAP_SYS_ADMIN and could mount a writable cgroupfs itself anyway (a
    privileged container: containerd asks for rw there, for systemd or an engine inside)."""
    for caps, opts in ((["CAP_CHOWN"], b"ro,"), (["CAP_SYS_ADMIN"], b"rw,")):
        p = rt("run", "--bundle", str(bundle(["sh", "-c", _CGROUP_OPTS], _rw_cgroup(caps))), new_id())
        assert p.returncode == 0 and p.stdout.startswith(opts), (caps, p)


def test_runtime_interpreter_never_executed_in_the_container(rt, bundle) -> None:
    """CVE-2019-5736 for a Python runtime: until execve the process's /proc/self/exe is the host
    interpreter.  An image must not get it executed, directly or through a #! chain."""
    b = bundle(["sleep", "1000"], lambda cfg: cfg["root"].update(readonly=False))
    bindir = b / "rootfs" / "bin"
    (bindir / "evil").write_text("#!/proc/self/exe\nprint('pwned')\n")
    (bindir / "evil2").write_text("#!/bin/evil\n")
    for f in ("evil", "evil2"):
        (bindir / f).chmod(0o755)
    cid = new_id()
    rt("run", "-d", "--bundle", str(b), cid, check=True)
    try:
        for args in (["/proc/self/exe", "-c", "print(1)"], ["evil"], ["/bin/evil2"]):
            p = rt("exec", cid, *args)
            err = p.stderr.decode()
            assert p.returncode == 255 and "runtime's own interpreter" in err, (args, err)
            assert b"pwned" not in p.stdout
    finally:
        rt("delete", "--force", cid)
    # create refuses it the same way, leaving nothing behind
    p = rt("create", "--bundle", str(bundle(["/proc/self/exe"])), new_id())
    assert p.returncode == 1 and b"runtime's own interpreter" in p.stderr, p.stderr
