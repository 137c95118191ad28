"""The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, kept in the bundle.

They are bind-mounted over the image's files, so ``network up`` must rewrite ``hosts`` in place
(open with O_TRUNC, write): a rename would put a new inode beside the one the container sees.
"""

from __future__ import annotations

import os

from ociruntime.errors import NetworkError, describe_oserror

HOSTS = "hosts"
HOSTNAME = "hostname"
RESOLV = "resolv.conf"
FILES = (HOSTS, HOSTNAME, RESOLV)
# Where each file goes in the container.
DESTINATIONS = {HOSTS: "/etc/hosts", HOSTNAME: "/etc/hostname", RESOLV: "/etc/resolv.conf"}

# The host's files, read for host mode and for the nameservers (tests point these elsewhere).
HOST_HOSTS = "/etc/hosts"
HOST_RESOLV = "/etc/resolv.conf"

_LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def hosts_text(name: str, ip: str | None) -> str:
    """localhost lines, then the container's own name on its address (127.0.1.1 without one)."""
    return f"{_LOCALHOST}{ip or '127.0.1.1'}\t{name}\n"


def host_hosts_text(name: str) -> str:
    """host mode: the host's own hosts file, plus the container's name if it is not in it."""
    text = read_text(HOST_HOSTS)
    if text and not text.endswith("\n"):
        text += "\n"
    if not any(name in line.split("#")[0].split()[1:] for line in text.splitlines()):
        text += f"127.0.1.1\t{name}\n"
    return text


def _loopback_nameserver(line: str) -> bool:
    fields = line.split()
    return len(fields) >= 2 and fields[0] == "nameserver" and (
        fields[1].startswith("127.") or fields[1] == "::1")


def resolv_text(own_netns: bool) -> str:
    """The host's resolv.conf; in a network namespace of its own a container cannot reach a
    nameserver on the host's loopback (systemd-resolved, dnsmasq), so those lines go."""
    text = read_text(HOST_RESOLV)
    if not own_netns:
        return text
    return "".join(line for line in text.splitlines(keepends=True) if not _loopback_nameserver(line))


def read_text(path: str) -> str:
    """A small text file; missing is empty (a host without /etc/resolv.conf is legal)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise NetworkError(describe_oserror(e, "read")) from None


def write_in_place(path: str, text: str) -> None:
    """Truncate and rewrite ``path`` keeping its inode (it may be bind-mounted already)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(text.encode())
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
