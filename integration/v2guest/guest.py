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
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC  # reboot(2)
CGROUP = "/sys/fs/cgroup"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIBC = ctypes.CDLL(None, use_errno=True)


def mount(fstype: str, source: str, target: str, options: str = "") -> None:
    """mount(8) from util-linux (the host's, seen through the 9p root)."""
    os.makedirs(target, exist_ok=True)
    cmd = ["/bin/mount", "-t", fstype, *(["-o", options] if options else []), source, target]
    subprocess.run(cmd, check=True)


SCRATCH = "/v2guest-scratch"


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
    env = {"PATH": PATH, "HOME": "/root", "TMPDIR": SCRATCH, "LANG": "C.UTF-8", "TERM": "dumb"}
    env.update(req["env"])
    (out / "guest.json").write_text(json.dumps({"uname": os.uname().release, "subtree_control": subtree}))
    rc = run_and_reap(req["argv"], env, req["repo"], out / "pytest.log")
    (out / "exit").write_text(f"{rc}\n")


if __name__ == "__main__":
    result = Path(sys.argv[1])
    try:
        main(result)
    except BaseException:
        (result / "guest-error.txt").write_text(traceback.format_exc())
    finally:
        os.sync()
        LIBC.reboot(LINUX_REBOOT_CMD_POWER_OFF)
