"""Riddler-style conformance: every engine-generated config in ../shared/corpus/real-configs runs.

The test swaps in a busybox rootfs, the checker as ``process.args``, temporary files for bind
sources that only exist on the engine's host, a namespace we hold for joined-namespace paths,
and a unique cgroupsPath; then the checker (inside) confirms what the config asked.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SHARED, ConsoleReceiver, new_id

pytestmark = pytest.mark.root

CORPUS = SHARED / "corpus" / "real-configs"
CONFIGS = sorted(p.name for p in CORPUS.glob("*.json")) if CORPUS.is_dir() else []
NSNAME = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts", "user": "user",
          "cgroup": "cgroup", "time": "time"}
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
        "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]


def host_bounding() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def cap_mask(names: list[str]) -> int:
    return sum(1 << CAPS.index(n) for n in set(names) if n in CAPS) & host_bounding()


def is_file_dest(dest: str) -> bool:
    return dest.startswith("/etc/") or dest in ("/run/.containerenv", "/run/podman-init")


def adapt(cfg: dict, rootfs: Path, tmp: Path, holder_pid: int) -> dict:
    cfg["root"]["path"] = str(rootfs)
    sysctls = " ".join(sorted((cfg.get("linux") or {}).get("sysctl", {})))
    devices = " ".join(d["path"] for d in (cfg.get("linux") or {}).get("devices", []))
    # one checker call per fact group, separated by marker lines
    cfg["process"]["args"] = ["sh", "-c", f"checker report; echo; echo @@; checker sysctl {sysctls}; echo; "
                              f"echo @@; checker stat {devices}"]
    cfg["process"]["env"] = ["PATH=/bin:/usr/bin", *[e for e in cfg["process"].get("env", [])
                                                     if not e.startswith("PATH=")]]
    linux = cfg.setdefault("linux", {})
    for i, m in enumerate(cfg.get("mounts", [])):
        opts = m.get("options") or []
        if (m.get("type") == "bind" or "bind" in opts or "rbind" in opts) and not os.path.exists(m["source"]):
            src = tmp / f"src{i}"
            if is_file_dest(m["destination"]):
                src.write_text("x\n")
            else:
                src.mkdir()
            m["source"] = str(src)
    for ns in linux.get("namespaces", []):
        if ns.get("path") and not os.path.exists(ns["path"]):
            ns["path"] = f"/proc/{holder_pid}/ns/{NSNAME[ns['type']]}"
    # This host lacks CAP_SYS_RESOURCE: hard limits above its own cannot be set (podman is
    # configured with default_ulimits within them, see CLIENTS.md); clamp like that config would.
    for rl in cfg["process"].get("rlimits", []):
        hard = resource.getrlimit(getattr(resource, rl["type"]))[1]
        if hard != resource.RLIM_INFINITY:
            rl["hard"] = min(rl["hard"], hard)
            rl["soft"] = min(rl["soft"], rl["hard"])
    if linux.get("cgroupsPath"):
        parent = os.path.dirname(linux["cgroupsPath"].rstrip("/"))
        linux["cgroupsPath"] = f"{parent}/{new_id('corpus')}"
    return cfg


@pytest.mark.skipif(not CONFIGS, reason="../shared/corpus/real-configs not available")
@pytest.mark.parametrize("name", CONFIGS)
def test_real_config_runs(rt, bundle, tmp_path: Path, name: str) -> None:
    orig = json.loads((CORPUS / name).read_text())
    holder = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        b = bundle(["true"])
        cfg = adapt(json.loads(json.dumps(orig)), b / "rootfs", tmp_path, holder.pid)
        (b / "config.json").write_text(json.dumps(cfg))
        cid = new_id("corpus")
        terminal = bool(cfg["process"].get("terminal"))
        if terminal:
            recv = ConsoleReceiver(tmp_path / "console.sock")
            p = rt("create", "--bundle", str(b), "--console-socket", str(tmp_path / "console.sock"), cid)
            assert p.returncode == 0, p.stderr.decode()
            rt("start", cid, check=True)
            recv.thread.join(20)
            out = recv.output.replace(b"\r\n", b"\n")
            assert recv.name and recv.master >= 0
            os.close(recv.master)
            rt("delete", "--force", cid, check=True)
        else:
            p = rt("run", "--bundle", str(b), cid)
            assert p.returncode == 0, p.stderr.decode()
            out = p.stdout
        parts = [json.loads(x) for x in out.decode().split("@@")]
        check_report(orig, cfg, parts[0], holder.pid, terminal)
        for key, value in (cfg.get("linux") or {}).get("sysctl", {}).items():
            assert parts[1][key].split() == value.split(), key
        for dev in (cfg.get("linux") or {}).get("devices", []):
            if dev["path"] == "/dev/ptmx":
                continue  # always the pts/ptmx symlink, as runc's setupPtmx makes it
            st = parts[2][dev["path"]]
            kind = {"c": "chr", "u": "chr", "b": "blk", "p": "fifo"}[dev["type"]]
            assert st["type"] == kind, dev
            if kind != "fifo":
                assert (st["major"], st["minor"]) == (dev["major"], dev["minor"]), dev
            if "fileMode" in dev:
                assert st["mode"] & 0o777 == dev["fileMode"] & 0o777, dev
    finally:
        holder.kill()
        holder.wait()


def check_report(orig: dict, cfg: dict, r: dict, holder_pid: int, terminal: bool) -> None:
    linux = cfg.get("linux", {})
    proc = cfg["process"]
    # namespaces: new ones differ from the host, joined ones equal the given path
    for ns in linux.get("namespaces", []):
        name = NSNAME[ns["type"]]
        if name not in r["ns"]:
            continue
        if ns.get("path"):
            assert r["ns"][name] == os.stat(ns["path"]).st_ino, name
        else:
            assert r["ns"][name] != os.stat(f"/proc/self/ns/{name}").st_ino, name
    types = {ns["type"] for ns in linux.get("namespaces", [])}
    for t in ("pid", "ipc", "uts", "network", "cgroup"):
        if t not in types:
            assert r["ns"][NSNAME[t]] == os.stat(f"/proc/self/ns/{NSNAME[t]}").st_ino, f"host {t}"
    # process identity, capabilities, rlimits
    user = proc.get("user", {})
    assert (r["uid"], r["gid"]) == (user.get("uid", 0), user.get("gid", 0))
    assert sorted(set(r["groups"])) == sorted(set(user.get("additionalGids", [])) - {user.get("gid", 0)}) \
        or sorted(set(r["groups"])) == sorted(set(user.get("additionalGids", [])))
    if "umask" in user:
        assert r["umask"] == user["umask"]
    caps = proc.get("capabilities", {})
    assert int(r["status"]["CapBnd"], 16) == cap_mask(caps.get("bounding", []))
    if user.get("uid", 0) != 0:
        assert int(r["status"]["CapEff"], 16) == cap_mask(caps.get("effective", []))
    for rl in proc.get("rlimits", []):
        want = [rl["soft"], rl["hard"]]
        want = [-1 if v >= 2**64 - 1 else v for v in want]
        assert r["rlimits"][rl["type"]] == want, rl["type"]
    assert r["status"]["NoNewPrivs"].strip() == ("1" if proc.get("noNewPrivileges") else "0")
    assert int(r["status"]["Seccomp"].strip()) == (2 if linux.get("seccomp") else 0)
    if proc.get("oomScoreAdj") is not None:
        assert r["oom_score_adj"] == proc["oomScoreAdj"]
    if cfg.get("hostname") and "uts" in types:
        assert r["hostname"] == cfg["hostname"]
    assert r["tty"] == terminal
    # every mount destination is a mount point inside
    mountpoints = {line.split()[4] for line in r["mountinfo"].splitlines()}
    for m in cfg.get("mounts", []):
        assert m["destination"] in mountpoints or any(
            mp.startswith(m["destination"].rstrip("/") + "/") for mp in mountpoints), m["destination"]
    # the root is read-only when asked
    root_opts = next(line.split()[5] for line in r["mountinfo"].splitlines() if line.split()[4] == "/")
    assert root_opts.startswith("ro") == bool(cfg["root"].get("readonly")), root_opts
    # cgroup joined
    cg = linux.get("cgroupsPath")
    if cg and "cgroup" not in types:
        assert any(line.endswith(cg) for line in r["cgroup"].splitlines()), r["cgroup"]
