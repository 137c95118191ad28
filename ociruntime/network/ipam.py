"""IP address management: one lease file per network, changed only under its lock.

``<store>/networks/<name>.leases``::

    {"version": 1, "network": "oci0", "subnet": "10.89.0.0/24",
     "leases": {"<container id>": {"ip": "10.89.0.2", "bundle": "/abs/bundle", "veth": "veth0123abcd"}}}

``<store>/networks/<name>.lock`` is the flock(2) target (the lease file itself is replaced by
rename, so it cannot carry the lock).  Every change is read-modify-write under that lock and
written crash-safe (fileio.write_atomic): a killed ``network up`` leaves the old or the new
lease table and at worst a temp file, which the next writer removes.  A lease file that is not a
valid table is an error naming it, never silently reset: that could give one address to two
running containers.

Leases are keyed by container id, so a repeated ``up`` for one id gets the same address back.
An address is the subnet's lowest host address that is neither the gateway nor leased.  A lease
whose bundle has no network.json any more (the bundle was deleted without ``network down``) is
stale and reclaimed when addresses are handed out.
"""

from __future__ import annotations

import ipaddress
import os

from ociruntime.errors import NetworkError
from ociruntime.network.defs import Network, networks_dir
from ociruntime.network.fileio import FileLock, dump, read_json, remove_stale_temps, write_atomic
from ociruntime.record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

VERSION = 1
NETWORK_JSON = "network.json"


@dataclass(frozen=True)
class Lease:
    ip: ipaddress.IPv4Address
    bundle: str
    veth: str

    def to_dict(self) -> dict[str, str]:
        return {"ip": str(self.ip), "bundle": self.bundle, "veth": self.veth}


def bundle_gone(lease: Lease) -> bool:
    """The default staleness test: the lease's bundle no longer carries our network.json."""
    return not os.path.exists(os.path.join(lease.bundle, NETWORK_JSON))


def same_bundle(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class Leases:
    """The lease table of one network, locked for the duration of a ``with`` block."""

    def __init__(self, store: str, network: Network) -> None:
        self.network = network
        directory = networks_dir(store)
        self.path = os.path.join(directory, f"{network.name}.leases")
        self._lock = FileLock(os.path.join(directory, f"{network.name}.lock"))
        self.table: dict[str, Lease] = {}

    def __enter__(self) -> Leases:
        self._lock.__enter__()
        try:
            self.table = self._load()
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__()

    def _corrupt(self, reason: str) -> NetworkError:
        return NetworkError(f"lease file {self.path} is corrupt ({reason}): fix or remove it")

    def _load(self) -> dict[str, Lease]:
        data = read_json(self.path, "lease file")
        if data is None:
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("leases"), dict):
            raise self._corrupt("not a lease table")
        if data.get("subnet") != str(self.network.subnet):
            raise self._corrupt(f"subnet {data.get('subnet')!r}, the network has {self.network.subnet}")
        table: dict[str, Lease] = {}
        seen: set[ipaddress.IPv4Address] = set()
        for cid, entry in data["leases"].items():
            if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str)
                                                    for k in ("ip", "bundle", "veth"))):
                raise self._corrupt(f"bad lease of {cid!r}")
            try:
                ip = ipaddress.IPv4Address(entry["ip"])
            except ValueError:
                raise self._corrupt(f"bad address of {cid!r}") from None
            if not self._usable(ip) or ip in seen:
                raise self._corrupt(f"address {ip} of {cid!r} is outside the pool or leased twice")
            seen.add(ip)
            table[cid] = Lease(ip=ip, bundle=entry["bundle"], veth=entry["veth"])
        return table

    def _usable(self, ip: ipaddress.IPv4Address) -> bool:
        net = self.network.subnet
        return ip in net and ip not in (net.network_address, net.broadcast_address, self.network.gateway)

    def _save(self) -> None:
        # We hold the lock: any temp file of this table is a dead writer's.
        remove_stale_temps(self.path)
        data = {"version": VERSION, "network": self.network.name, "subnet": str(self.network.subnet),
                "leases": {cid: lease.to_dict() for cid, lease in sorted(self.table.items())}}
        write_atomic(self.path, dump(data), 0o600)

    def get(self, cid: str) -> Lease | None:
        return self.table.get(cid)

    def allocate(self, cid: str, bundle: str, veth: str,
                 stale: Callable[[Lease], bool] = bundle_gone) -> Lease:
        """The lease of ``cid``: its existing one (same address), else a new lowest free address."""
        old = self.table.get(cid)
        if old is not None:
            lease = Lease(ip=old.ip, bundle=bundle, veth=veth)
            if lease != old:
                self.table[cid] = lease
                self._save()
            return lease
        for other in [c for c, lease in self.table.items() if stale(lease)]:
            del self.table[other]
        taken = {lease.ip for lease in self.table.values()}
        for ip in self.network.subnet.hosts():
            if ip != self.network.gateway and ip not in taken:
                lease = Lease(ip=ip, bundle=bundle, veth=veth)
                self.table[cid] = lease
                self._save()
                return lease
        raise NetworkError(f"network {self.network.name}: no free address in {self.network.subnet}")

    def free(self, cid: str) -> Lease | None:
        """Drop the lease of ``cid``; return it (None if it had none: freeing twice is fine)."""
        lease = self.table.pop(cid, None)
        if lease is not None:
            self._save()
        return lease

    def of_bundle(self, bundle: str) -> dict[str, Lease]:
        return {cid: lease for cid, lease in self.table.items() if same_bundle(lease.bundle, bundle)}
