"""The netlink half of bridge mode, over pyroute2 (imported by nothing but this module).

Every function takes an ``IPRoute`` whose socket was opened in the namespace it acts on: a
netlink socket stays bound to the network namespace it was created in, whatever namespace the
process joins later.  hook.py uses that to keep a host socket for undoing its work after it has
joined the container's namespace.
"""

from __future__ import annotations

import errno
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ociruntime.errors import NetworkError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ociruntime.network.defs import Network

CONTAINER_IF = "eth0"


def _fail(what: str, e: NetlinkError) -> NetworkError:
    reason = os.strerror(e.code).lower() if e.code else "netlink error"
    return NetworkError(f"{what}: {reason}")


def open_socket() -> IPRoute:
    """An rtnetlink socket in the calling thread's current network namespace."""
    return IPRoute()


def lookup(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _kind(ipr: IPRoute, index: int) -> str | None:
    return ipr.get_links(index)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def ensure_bridge(ipr: IPRoute, network: Network) -> int:
    """The network's bridge, made if missing, up, with the gateway address; its index.

    Concurrent ``up`` of one network are serialized by its lease lock; EEXIST is still taken as
    success so that a bridge made by hand with the right name and kind is used as it is.
    """
    name = network.name
    try:
        index = lookup(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            index = lookup(ipr, name)
            if index is None:
                raise NetworkError(f"bridge {name}: vanished right after it was created")
        if _kind(ipr, index) != "bridge":
            raise NetworkError(f"device {name} exists and is not a bridge")
        try:
            ipr.addr("add", index=index, address=str(network.gateway), prefixlen=network.subnet.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        ipr.link("set", index=index, state="up")
    except NetlinkError as e:
        raise _fail(f"set up bridge {name}", e) from None
    return index


def add_veth(ipr: IPRoute, host_name: str, bridge: int, netns_fd: int) -> None:
    """A veth pair: ``host_name`` on the bridge and up, its peer ``eth0`` in ``netns_fd``'s namespace.

    The peer is created in the container's namespace under its final name by the one
    RTM_NEWLINK (as ``ip link add ... peer name eth0 netns FD`` does) rather than created here,
    moved and renamed: no temporary name can clash in the host namespace, and a failure leaves
    no half-moved device.
    """
    try:
        ipr.link("add", ifname=host_name, kind="veth",
                 peer={"ifname": CONTAINER_IF, "net_ns_fd": netns_fd})
        index = lookup(ipr, host_name)
        if index is None:
            raise NetworkError(f"veth {host_name}: vanished right after it was created")
        ipr.link("set", index=index, master=bridge, state="up")
    except NetlinkError as e:
        raise _fail(f"create veth {host_name}", e) from None


def configure_container(ipr: IPRoute, address: str, prefixlen: int, gateway: str) -> None:
    """In the container's namespace: eth0 gets its address, comes up, default route via the gateway."""
    try:
        index = lookup(ipr, CONTAINER_IF)
        if index is None:
            raise NetworkError(f"{CONTAINER_IF} is missing in the container's network namespace")
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
    except NetlinkError as e:
        raise _fail(f"configure {CONTAINER_IF} ({address}/{prefixlen} via {gateway})", e) from None


def delete(ipr: IPRoute, name: str) -> bool:
    """Delete device ``name`` if it exists (a veth takes its peer along); True if it did."""
    try:
        index = lookup(ipr, name)
        if index is None:
            return False
        ipr.link("del", index=index)
    except NetlinkError as e:
        # Gone between lookup and delete: the container's namespace was just destroyed.
        if e.code == errno.ENODEV:
            return False
        raise _fail(f"delete {name}", e) from None
    return True


def delete_link(name: str) -> bool:
    """``delete`` with a socket of its own in the current namespace."""
    with open_socket() as ipr:
        return delete(ipr, name)
