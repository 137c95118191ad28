"""Stage 2 of the pure cgroup v2 guest: PID 1 in the overlay root, runs the tests, powers off.

Started by the initramfs /init (init.sh) through switch_root, with the host's Debian
``/usr/bin/python3`` (standard library only).  argv[1] is the result share, mounted at its host
path; it holds ``request.json`` written by run.py::

    {"repo": "/path/of/checkout", "argv": [...pytest command...], "env": {...},
     "modules": "/path/of/the/guest/kernel/modules/tree", "kver": "6.1.0-NN-amd64"}

This program mounts what a pure cgroup v2 host has (cgroup2 alone at /sys/fs/cgroup with
nsdelegate and memory_recursiveprot, every controller enabled for children), plain tmpfs mounts
for a scratch dir and /run (the overlay root cannot hold device nodes, which test bundles create), runs
the command with its output in ``pytest.log`` and writes its exit code to ``exit``.  As PID 1 it
reaps every orphan (exited container processes end up here), so none lingers as a zombie that
the integration tests' leak check would count.  Whatever happens, it powers the guest off.

In the systemd guest (run.py --systemd) systemd is PID 1 and mounts, reaps and powers off
itself; the scratch tmpfs is a mount unit and module autoloading is set up by run.py's overlay
links.  There the unit v2guest-tests.service runs ``guest.py --service OUT``: pytest as above,
then guest.json records what systemd set up and which units ran, with journal.txt and units.txt
beside it.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import signal
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC  # reboot(2)
CGROUP = "/sys/fs/cgroup"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRATCH = "/v2guest-scratch"
# pytest's environment, before request.json's env; run.py's BASE_ENV, which the systemd guest's
# unit sets, is the same.
BASE_ENV = {"PATH": PATH, "HOME": "/root", "TMPDIR": SCRATCH, "LANG": "C.UTF-8", "TERM": "dumb"}
LIBC = ctypes.CDLL(None, use_errno=True)


def mount(fstype: str, source: str, target: str, options: str = "") -> None:
    """mount(8) from util-linux (the host's, seen through the 9p root)."""
    os.makedirs(target, exist_ok=True)
    cmd = ["/bin/mount", "-t", fstype, *(["-o", options] if options else []), source, target]
    subprocess.run(cmd, check=True)


def bind(source: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    subprocess.run(["/bin/mount", "--bind", source, target], check=True)


def setup_mounts() -> None:
    # proc, sys and dev were moved here from the initramfs; the rest is what a host has.
    mount("devpts", "devpts", "/dev/pts", "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("tmpfs", "shm", "/dev/shm", "mode=1777,nosuid,nodev")
    # Scratch space on a plain tmpfs (bundles hold device nodes, which the overlay root cannot),
    # at its own path: a tmpfs over /tmp would hide a checkout that lives under the host's /tmp.
    mount("tmpfs", "tmpfs", SCRATCH, "mode=1777,nosuid")
    mount("tmpfs", "tmpfs", "/run", "mode=0755,nosuid,nodev")
    mount("cgroup2", "cgroup2", CGROUP, "nosuid,nodev,noexec,nsdelegate,memory_recursiveprot")


def enable_controllers() -> list[str]:
    """Enable every available controller for the root's children, like systemd does.

    This process (and so the tests it starts) moves to /init.scope first, where systemd keeps
    PID 1: the runtime then runs in a non-root cgroup as on a real host, and a container
    without cgroupsPath lands beside that cgroup, not in the root.
    """
    scope = os.path.join(CGROUP, "init.scope")
    os.mkdir(scope)
    Path(scope, "cgroup.procs").write_text(str(os.getpid()))
    ctrls = Path(CGROUP, "cgroup.controllers").read_text().split()
    with open(os.path.join(CGROUP, "cgroup.subtree_control"), "w") as f:
        f.write(" ".join("+" + c for c in ctrls))
    return Path(CGROUP, "cgroup.subtree_control").read_text().split()


def setup_modules(modules: str, kver: str) -> None:
    """Let the kernel autoload modules (veth, loop, ...) from the guest kernel's module tree.

    The tree (with a busybox-made modules.dep) lives in run.py's cache on the host and is seen
    through 9p; the kernel runs /proc/sys/kernel/modprobe, which must be called "modprobe" for
    busybox to pick that applet.
    """
    bind(modules, f"/lib/modules/{kver}")
    os.makedirs("/run/v2guest", exist_ok=True)
    os.symlink("/bin/busybox", "/run/v2guest/modprobe")
    Path("/proc/sys/kernel/modprobe").write_text("/run/v2guest/modprobe")


def loopback_up() -> None:
    """Bring up ``lo`` (there is no NIC): criu's feature checks need a working loopback."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP


def run_and_reap(argv: list[str], env: dict[str, str], cwd: str, log: Path) -> int:
    """Run ``argv`` with output to ``log``; reap every child until it exits; its exit code."""
    with open(log, "wb") as out:
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
    while True:
        pid, status = os.wait()
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode


def main(out: Path) -> None:
    req = json.loads((out / "request.json").read_text())
    setup_mounts()
    subtree = enable_controllers()
    setup_modules(req["modules"], req["kver"])
    loopback_up()
    env = {**BASE_ENV, **req["env"]}
    (out / "guest.json").write_text(json.dumps({"uname": os.uname().release, "subtree_control": subtree}))
    rc = run_and_reap(req["argv"], env, req["repo"], out / "pytest.log")
    (out / "exit").write_text(f"{rc}\n")


# ---- systemd as PID 1: the main process of v2guest-tests.service --------------------------------

stopped_by = ""


def _stopped(signum: int, frame: object) -> None:
    """SIGTERM from systemd (RuntimeMaxSec): pytest got one too; wait for it and record it."""
    global stopped_by
    stopped_by = signal.Signals(signum).name


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def service(out: Path) -> None:
    """v2guest-tests.service: pytest with output in pytest.log, its exit code in exit, the facts.

    The environment is the unit's (run.py's BASE_ENV plus request.json's env); systemd reaps
    orphans, so a plain wait suffices.  The facts are a record, not the result: when recording
    them fails, guest.json says why and the stage's result is still pytest's.
    """
    req = json.loads((out / "request.json").read_text())
    facts: dict = {"uname": os.uname().release, "pid1": Path("/proc/1/comm").read_text().strip(),
                   "uptime_at_start": uptime()}
    signal.signal(signal.SIGTERM, _stopped)
    log = out / "pytest.log"
    with open(log, "wb") as f:
        child = subprocess.Popen(req["argv"], cwd=req["repo"], stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT)
    rc = child.wait()  # the SIGTERM handler returns, and the wait goes on (PEP 475)
    if stopped_by:
        with open(log, "a") as f:
            f.write(f"\nv2guest: systemd sent {stopped_by} (the unit's RuntimeMaxSec ran out?)\n")
    (out / "exit").write_text(f"{rc}\n")
    facts["uptime_at_end"] = uptime()
    try:
        facts.update(systemd_facts(out))
    except Exception:
        facts["facts_error"] = traceback.format_exc()
    (out / "guest.json").write_text(json.dumps(facts, indent=1))


def _run(*argv: str) -> str:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30).stdout


def started_units(dump: str, journal_json: str) -> list[str]:
    """Units that ever left the inactive state: from ``systemd-analyze dump`` (loaded units with
    an "Inactive Exit Timestamp") and from the journal's start jobs (units collected since)."""
    started = set()
    unit = None
    for line in dump.splitlines():
        if line.startswith("-> Unit ") and line.endswith(":"):
            unit = line[len("-> Unit "):-1]
        elif unit and line.strip().startswith("Inactive Exit Timestamp:") and not line.endswith(": n/a"):
            started.add(unit)
    for line in journal_json.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("JOB_TYPE") == "start" and isinstance(entry.get("UNIT"), str):
            started.add(entry["UNIT"])
    return sorted(started)


def systemd_facts(out: Path) -> dict:
    """The cgroup layout systemd mounted, this unit's cgroups, the system state, the units that ran.

    ``host_units_started``: those of the started units that this machine enables in
    /etc/systemd/system/*.wants (none should be: the guest starts v2guest.target alone).  The
    commands run side by side: each costs a few tenths of a second under TCG.
    """
    commands = {
        "state": ["systemctl", "is-system-running"],
        "units": ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager"],
        "journal": ["journalctl", "-b", "-o", "short-monotonic", "--no-pager"],
        "jobs": ["journalctl", "-b", "_PID=1", "-o", "json", "--output-fields=UNIT,JOB_TYPE"],
        "dump": ["systemd-analyze", "dump"],
    }
    with ThreadPoolExecutor(len(commands)) as pool:
        found = dict(zip(commands, pool.map(lambda argv: _run(*argv), commands.values()), strict=True))
    (out / "units.txt").write_text(found["units"])
    (out / "journal.txt").write_text(found["journal"])
    with open("/proc/self/mountinfo") as f:
        cgroup_mounts = [line.rstrip("\n") for line in f if line.split()[4].startswith("/sys/fs/cgroup")]
    subtree = next((Path(d, "cgroup.subtree_control").read_text().split()
                    for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
                    if os.path.exists(os.path.join(d, "cgroup.subtree_control"))), None)
    started = started_units(found["dump"], found["jobs"])
    enabled = {os.path.basename(p) for p in glob.glob("/etc/systemd/system/*.wants/*")}
    units = [line.split() for line in found["units"].splitlines()]  # UNIT LOAD ACTIVE SUB ...
    return {
        "system_state": found["state"].strip(),
        "failed_units": [u[0] for u in units if len(u) > 2 and u[2] == "failed"],
        "startup": [line.split("]: ", 1)[-1] for line in found["journal"].splitlines()
                    if "Startup finished" in line],
        "started_units": started,
        "host_units_started": sorted(set(started) & enabled),
        "cgroup_mounts": cgroup_mounts,
        "cgroup": Path("/proc/self/cgroup").read_text().splitlines(),
        "subtree_control": subtree,
    }


def service_main(out: Path) -> int:
    try:
        service(out)
        return 0
    except BaseException:
        (out / "guest-error.txt").write_text(f"guest.py --service:\n{traceback.format_exc()}")
        return 1


if __name__ == "__main__":
    if sys.argv[1] == "--service":
        sys.exit(service_main(Path(sys.argv[2])))
    result = Path(sys.argv[1])
    try:
        main(result)
    except BaseException:
        (result / "guest-error.txt").write_text(traceback.format_exc())
    finally:
        os.sync()
        LIBC.reboot(LINUX_REBOOT_CMD_POWER_OFF)
