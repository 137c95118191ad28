"""``ociruntime network up|down``: the createRuntime and poststop hooks of a bridge bundle.

Both read the container state (runtime.md) on stdin and ``<bundle>/network.json`` (bundle.py).
A bundle in another mode, or without network.json, is left alone: the hooks exist only for
bridge mode, but a hand-edited config must not make them fail.

``up`` (createRuntime: the runtime's namespaces, the container's already exist):

1. under the network's lease lock: allocate the container's address (ipam.py), make sure the
   bridge exists, is up and has the gateway address, create the veth pair (link.py);
2. join the container's network namespace with setns(2) and configure eth0 there;
3. rewrite the bundle's hosts file in place with the container's address.

Step 2 moves this short-lived hook process itself into the container's namespace rather than
using pyroute2's netns support: that one forks a helper to open the socket and by default
*creates* a namespace file when the path is wrong (O_CREAT), while setns(2) on the fd we
already hold is one syscall and fails cleanly on anything but a network namespace.  The host
socket opened before the setns stays in the host namespace, so the undo of a failure needs no
way back.  A failure in any step deletes the veth (its peer goes with it) and frees the lease,
then exits non-zero with one line.

``down`` (poststop, the container is gone): delete the host veth if it is still there, free the
lease.  Idempotent: every step tolerates "already gone".
"""

from __future__ import annotations

import json
import os

from ociruntime.errors import NetworkError, OCIError, describe_oserror, suppress
from ociruntime.network import defs, etcfiles
from ociruntime.network.bundle import read_record
from ociruntime.network.ipam import Leases


def parse_state(raw: bytes) -> tuple[str, int, str]:
    """(id, pid, bundle) of the state JSON a hook gets on stdin."""
    try:
        state = json.loads(raw)
    except ValueError:
        raise NetworkError("the container state on stdin is not JSON (run as an OCI hook)") from None
    if not isinstance(state, dict):
        raise NetworkError("the container state on stdin is not a JSON object")
    cid, pid, bundle = state.get("id"), state.get("pid", 0), state.get("bundle")
    if not isinstance(cid, str) or not cid or not isinstance(bundle, str) or not os.path.isabs(bundle):
        raise NetworkError("the container state on stdin has no id or no absolute bundle path")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
        raise NetworkError("the container state on stdin has a bad pid")
    return cid, pid, bundle


def _bridge_network(bundle: str) -> tuple[dict, defs.Network] | None:
    """(network.json, network) for a bridge bundle; None for any other bundle."""
    record = read_record(bundle)
    if record is None or record["mode"] != "bridge":
        return None
    store = record["store"]
    network = defs.load(store, record["network"])
    if network is None:
        raise NetworkError(f"network {record['network']} is not defined in {defs.networks_dir(store)}")
    return record, network


def _open_netns(pid: int) -> int:
    """An fd of the container's network namespace, which must not be ours (host mode)."""
    if pid <= 0:
        raise NetworkError("the container state has no pid: network up runs as a createRuntime hook")
    path = f"/proc/{pid}/ns/net"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetworkError(describe_oserror(e, "open")) from None
    if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
        os.close(fd)
        raise NetworkError(f"container process {pid} has no network namespace of its own")
    return fd


def up(raw_state: bytes) -> None:
    cid, pid, bundle = parse_state(raw_state)
    found = _bridge_network(bundle)
    if found is None:
        return
    record, network = found
    store, name = record["store"], str(record.get("name") or cid)
    netns_fd = _open_netns(pid)
    from ociruntime.linux.ns import CLONE_NEWNET, setns_fd
    from ociruntime.network import link

    veth = defs.veth_name(cid)
    try:
        with link.open_socket() as host, Leases(store, network) as leases:
            lease = leases.allocate(cid, bundle, veth)
            try:
                bridge = link.ensure_bridge(host, network)
                link.delete(host, veth)  # an earlier `up` of this id that was killed half-way
                link.add_veth(host, veth, bridge, netns_fd)
                setns_fd(netns_fd, CLONE_NEWNET, f"/proc/{pid}/ns/net")
                with link.open_socket() as inside:
                    link.configure_container(inside, str(lease.ip), network.subnet.prefixlen,
                                             str(network.gateway))
                etcfiles.write_in_place(os.path.join(bundle, etcfiles.HOSTS),
                                        etcfiles.hosts_text(name, str(lease.ip)))
            except BaseException:
                # `host` was opened before the setns: it still acts on the host namespace.
                with suppress(OCIError, OSError):
                    link.delete(host, veth)
                leases.free(cid)
                raise
    except OSError as e:
        raise NetworkError(describe_oserror(e, "network up")) from None
    finally:
        os.close(netns_fd)


def down(raw_state: bytes) -> None:
    cid, _, bundle = parse_state(raw_state)
    try:
        found = _bridge_network(bundle)
    except NetworkError:
        # The bundle (or its network) is gone: `bundle delete` already released what it held.
        if not os.path.isdir(bundle):
            return
        raise
    if found is None:
        return
    record, network = found
    from ociruntime.network import link

    try:
        with Leases(record["store"], network) as leases:
            lease = leases.get(cid)
            link.delete_link(lease.veth if lease is not None else defs.veth_name(cid))
            leases.free(cid)
    except OSError as e:
        raise NetworkError(describe_oserror(e, "network down")) from None
