"""Network definitions: a name (also the bridge's device name), an IPv4 subnet and its gateway.

Persisted as ``<store>/networks/<name>.json`` (``{"name", "subnet", "gateway"}``), written
crash-safe (fileio.write_atomic) under ``<store>/networks/.defs.lock``, so two bundle commands
creating networks at once never pick the same subnet.  A definition never changes once written:
the leases and running containers depend on it.

Defaults: network ``oci0`` with 10.89.0.0/24; a new named network without an explicit subnet gets
the first 10.89.N.0/24 that overlaps no defined network.  The gateway is the subnet's first host
address, assigned to the bridge.
"""

from __future__ import annotations

import ipaddress
import os

from ociruntime.errors import NetworkError
from ociruntime.network.fileio import FileLock, dump, read_json, write_atomic
from ociruntime.record import dataclass

DEFAULT_STORE = "/var/lib/ociruntime"
DEFAULT_NETWORK = "oci0"
DEFAULT_SUBNET = "10.89.0.0/24"
# The pool new networks take their /24 from when no subnet is given.
_POOL = ipaddress.IPv4Network("10.89.0.0/16")
# IFNAMSIZ is 16 with the terminating nul; the name is the bridge's device name.
MAX_NAME = 15
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
# /31 and /32 leave no room for a gateway and a container; /8 is plenty for one bridge.
_MIN_PREFIX, _MAX_PREFIX = 8, 30
_DEFS_LOCK = ".defs.lock"


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "subnet": str(self.subnet), "gateway": str(self.gateway)}


def validate_name(name: str) -> str:
    """A network name that is also a valid, harmless device and file name."""
    if not name or len(name) > MAX_NAME:
        raise NetworkError(f"invalid network name {name!r}: 1 to {MAX_NAME} characters")
    if not set(name) <= _NAME_CHARS or name in (".", ".."):
        raise NetworkError(f"invalid network name {name!r}: only letters, digits, '_', '.' and '-'")
    return name


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """``A.B.C.D/N``: IPv4, host bits zero, prefix length 8 to 30."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise NetworkError(f"invalid subnet {text!r}: {str(e).lower()}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise NetworkError(f"invalid subnet {text!r}: only IPv4 is supported")
    if not _MIN_PREFIX <= net.prefixlen <= _MAX_PREFIX:
        raise NetworkError(f"invalid subnet {text!r}: prefix length must be {_MIN_PREFIX} to {_MAX_PREFIX}")
    return net


def networks_dir(store: str) -> str:
    return os.path.join(store, "networks")


def _def_path(store: str, name: str) -> str:
    return os.path.join(networks_dir(store), f"{name}.json")


def _from_dict(data: object, path: str) -> Network:
    if not (isinstance(data, dict) and isinstance(data.get("name"), str)
            and isinstance(data.get("subnet"), str) and isinstance(data.get("gateway"), str)):
        raise NetworkError(f"network definition {path} is corrupt (bad fields): fix or remove it")
    try:
        subnet = parse_subnet(data["subnet"])
        gateway = ipaddress.IPv4Address(data["gateway"])
    except (NetworkError, ValueError):
        raise NetworkError(f"network definition {path} is corrupt (bad subnet): fix or remove it") from None
    if gateway not in subnet:
        raise NetworkError(f"network definition {path} is corrupt (gateway outside subnet): fix or remove it")
    return Network(name=validate_name(data["name"]), subnet=subnet, gateway=gateway)


def load(store: str, name: str) -> Network | None:
    """The definition of network ``name``, or None if it is not defined."""
    path = _def_path(store, validate_name(name))
    data = read_json(path, "network definition")
    return None if data is None else _from_dict(data, path)


def all_networks(store: str) -> list[Network]:
    try:
        names = sorted(os.listdir(networks_dir(store)))
    except FileNotFoundError:
        return []
    out = []
    for entry in names:
        if entry.endswith(".json") and not entry.startswith("."):
            net = load(store, entry[: -len(".json")])
            if net is not None:
                out.append(net)
    return out


def _free_subnet(taken: list[ipaddress.IPv4Network], preferred: ipaddress.IPv4Network | None) -> (
        ipaddress.IPv4Network):
    candidates = [preferred] if preferred is not None else []
    candidates += list(_POOL.subnets(new_prefix=24))
    for cand in candidates:
        if not any(cand.overlaps(t) for t in taken):
            return cand
    raise NetworkError(f"no free /24 left in {_POOL} for a new network: give a subnet")


def ensure(store: str, name: str, subnet: str | None = None) -> Network:
    """The network ``name``, defined now if it is not yet (with ``subnet`` or a free one).

    ``subnet`` for an existing network must match its definition; a new subnet must not overlap
    another network's (two bridges routing one prefix would make addresses ambiguous).
    """
    validate_name(name)
    wanted = parse_subnet(subnet) if subnet is not None else None
    directory = networks_dir(store)
    with FileLock(os.path.join(directory, _DEFS_LOCK)):
        existing = load(store, name)
        if existing is not None:
            if wanted is not None and wanted != existing.subnet:
                raise NetworkError(f"network {name} exists with subnet {existing.subnet}, not {wanted}")
            return existing
        others = all_networks(store)
        if wanted is not None:
            for other in others:
                if wanted.overlaps(other.subnet):
                    raise NetworkError(f"subnet {wanted} overlaps network {other.name} ({other.subnet})")
            chosen = wanted
        else:
            preferred = ipaddress.IPv4Network(DEFAULT_SUBNET) if name == DEFAULT_NETWORK else None
            chosen = _free_subnet([o.subnet for o in others], preferred)
        net = Network(name=name, subnet=chosen, gateway=next(chosen.hosts()))
        path = _def_path(store, name)
        write_atomic(path, dump(net.to_dict()))
        return net


def veth_name(container_id: str) -> str:
    """The host end of a container's veth pair: "veth" + 11 hex digits of sha256(id) (15 chars).

    Derived from the id, so ``down`` and ``release`` find it without any other record; 44 bits
    make a collision between two live containers on one host negligible.
    """
    import hashlib

    return "veth" + hashlib.sha256(container_id.encode()).hexdigest()[:11]
