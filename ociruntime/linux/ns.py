"""Namespaces: unshare, setns, id maps, time offsets, UTS names and the loopback interface."""

from __future__ import annotations

import _socket  # the C module: socket.py imports enum and selectors (~2.5 ms)
import ctypes
import fcntl
import os
import struct

from ociruntime.linux.libc import LIBC, check, fsencode

# CLONE_NEW* flags (<linux/sched.h>); Python 3.11's os module has neither these nor unshare/setns.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Spec namespace type -> (CLONE_NEW* flag, name under /proc/<pid>/ns).
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "user": (CLONE_NEWUSER, "user"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}

# Joining order (runc nsexec): the user namespace first, so that we hold capabilities over the
# namespaces owned by it; the mount namespace last, since setns(mnt) changes our root and cwd and
# later /proc-relative paths would point into the container.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def unshare(flags: int) -> None:
    check(LIBC.unshare(ctypes.c_int(flags)), f"unshare {flags:#x}")


def setns_fd(fd: int, nstype: int, what: str) -> None:
    """Join the namespace open at ``fd``; the kernel checks it has type ``nstype``."""
    check(LIBC.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", what)


def setns_path(path: str, nstype: int) -> None:
    """Join the namespace at ``path`` (an nsfs file), checking that it has type ``nstype``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_fd(fd, nstype, path)
    finally:
        os.close(fd)


def format_id_map(mappings: list[dict]) -> bytes:
    """Spec ``uidMappings``/``gidMappings`` -> the text written to /proc/<pid>/uid_map."""
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings).encode()


def write_proc_file(pid: int, name: str, data: bytes) -> None:
    path = f"/proc/{pid}/{name}"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.write(fd, data)
    except OSError as e:
        raise OSError(e.errno, f"write {path}: {os.strerror(e.errno or 0)}", path) from None
    finally:
        os.close(fd)


def write_time_offsets(offsets: dict[str, dict]) -> None:
    """Spec ``linux.timeOffsets`` -> /proc/self/timens_offsets, before any process enters the ns."""
    clocks = {"monotonic": "monotonic", "boottime": "boottime"}
    lines = []
    for clock, off in offsets.items():
        lines.append(f"{clocks[clock]} {int(off.get('secs', 0))} {int(off.get('nanosecs', 0))}\n")
    if lines:
        fd = os.open("/proc/self/timens_offsets", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, "".join(lines).encode())
        except OSError as e:
            raise OSError(e.errno, f"write timens_offsets: {os.strerror(e.errno or 0)}") from None
        finally:
            os.close(fd)


LIBC.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def set_hostname(name: str) -> None:
    try:
        _socket.sethostname(name)
    except OSError as e:
        raise OSError(e.errno, f"sethostname {name}: {os.strerror(e.errno or 0)}") from None


def set_domainname(name: str) -> None:
    b = fsencode(name)
    check(LIBC.setdomainname(b, len(b)), f"setdomainname {name}")


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in the current (new) network namespace.

    Two ioctls on a datagram socket do this; pyroute2 would cost ~110 ms of import time for it.
    """
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    ifr = struct.pack("16sH22x", b"lo", 0)
    try:
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    except OSError as e:
        raise OSError(e.errno, f"set lo up: {os.strerror(e.errno or 0)}") from None
    finally:
        s.close()
