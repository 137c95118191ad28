"""The bundle side of networking: rewrite an OCI config for a network mode; undo on delete.

``configure`` is called by ``bundle create`` and never imports pyroute2: every netlink step of
bridge mode happens later, in the ``network up``/``network down`` hooks (hook.py), with what
``network.json`` records here.  ``release`` imports the netlink code only for a bridge bundle
that still holds a lease.
"""

from __future__ import annotations

import os

from ociruntime.errors import NetworkError, OCIError
from ociruntime.network import defs, etcfiles
from ociruntime.network.fileio import dump, read_json, write_atomic
from ociruntime.network.ipam import NETWORK_JSON, Leases

MODES = ("none", "host", "container:ID", "bridge[:NAME]")
NETWORK_JSON_VERSION = 1
# A bind of a single file; rw, as in docker: a container may edit its own hosts file.
_BIND_OPTIONS = ["bind", "nosuid", "nodev", "noexec"]


def parse_mode(net: str) -> tuple[str, str]:
    """``--net`` -> (mode, argument): ("bridge", network name), ("container", id), ("none"|"host", "")."""
    kind, sep, arg = net.partition(":")
    if kind in ("none", "host") and not sep:
        return kind, ""
    if kind == "bridge":
        return kind, defs.validate_name(arg) if sep else defs.DEFAULT_NETWORK
    if kind == "container" and arg:
        return kind, arg
    raise NetworkError(f"invalid network mode {net!r}: use {' | '.join(MODES)}")


def _container_netns(state_root: str, cid: str) -> tuple[str, str]:
    """(/proc/PID/ns/net, bundle) of a created or running container in ``state_root``."""
    from ociruntime.state.store import Store

    try:
        with Store(state_root).open(cid) as cdir:
            rec = cdir.load()
            status = cdir.status(rec)
    except OCIError as e:
        raise NetworkError(f"network container:{cid}: {e}") from None
    if status not in ("created", "running"):
        raise NetworkError(f"network container:{cid}: the container is {status}, not created or running")
    return f"/proc/{rec.pid}/ns/net", rec.bundle


def _set_netns(config: dict, entry: dict[str, str] | None) -> None:
    """Replace the "network" entry of linux.namespaces by ``entry`` (None: no network namespace)."""
    linux = config.setdefault("linux", {})
    namespaces = [ns for ns in linux.get("namespaces") or [] if ns.get("type") != "network"]
    if entry is not None:
        namespaces.append(entry)
    linux["namespaces"] = namespaces


def _is_hook_of_ours(hook: object, runtime: str) -> bool:
    return (isinstance(hook, dict) and hook.get("path") == runtime
            and (hook.get("args") or [])[1:2] == ["network"])


def _set_hooks(config: dict, runtime: str, bridge: bool) -> None:
    """Our createRuntime/poststop hooks, once (configure may run again on the same config)."""
    hooks = config.get("hooks") or {}
    for kind, verb in (("createRuntime", "up"), ("poststop", "down")):
        entries = [h for h in hooks.get(kind) or [] if not _is_hook_of_ours(h, runtime)]
        if bridge:
            entries.append({"path": runtime, "args": ["ociruntime", "network", verb]})
        if entries:
            hooks[kind] = entries
        else:
            hooks.pop(kind, None)
    if hooks:
        config["hooks"] = hooks
    else:
        config.pop("hooks", None)


def _set_mounts(config: dict, bundle_dir: str) -> None:
    destinations = set(etcfiles.DESTINATIONS.values())
    mounts = [m for m in config.get("mounts") or [] if m.get("destination") not in destinations]
    for name in etcfiles.FILES:
        mounts.append({"destination": etcfiles.DESTINATIONS[name], "type": "bind",
                       "source": os.path.join(bundle_dir, name), "options": list(_BIND_OPTIONS)})
    config["mounts"] = mounts


def _has_uts_ns(config: dict) -> bool:
    return any(ns.get("type") == "uts" and not ns.get("path")
               for ns in (config.get("linux") or {}).get("namespaces") or [])


def configure(config: dict, bundle_dir: str, net: str, *, store: str, name: str, runtime: str,
              state_root: str, subnet: str | None = None) -> None:
    """Make ``config`` use network mode ``net``: namespaces, hooks, the /etc files and their mounts.

    Writes ``bundle_dir``/hosts, hostname, resolv.conf and network.json.  Raises NetworkError
    (one line) on a bad mode, an unknown or stopped container, a bad network name or subnet.
    """
    mode, arg = parse_mode(net)
    if subnet is not None and mode != "bridge":
        raise NetworkError(f"a subnet is only for bridge networks, not {net!r}")
    if not os.path.isabs(runtime):
        raise NetworkError(f"runtime path {runtime!r} for the network hooks must be absolute")
    bundle_dir = os.path.abspath(bundle_dir)
    record: dict[str, object] = {"version": NETWORK_JSON_VERSION, "mode": mode, "name": name}
    hosts, resolv = etcfiles.hosts_text(name, None), ""
    if mode == "none":
        _set_netns(config, {"type": "network"})
    elif mode == "host":
        _set_netns(config, None)
        hosts, resolv = etcfiles.host_hosts_text(name), etcfiles.resolv_text(own_netns=False)
    elif mode == "container":
        path, their_bundle = _container_netns(state_root, arg)
        _set_netns(config, {"type": "network", "path": path})
        record["container"] = arg
        resolv = etcfiles.resolv_text(own_netns=True)
        if os.path.exists(os.path.join(their_bundle, NETWORK_JSON)):
            # Theirs is ours: same addresses and nameservers (`up` already wrote their address).
            hosts = etcfiles.read_text(os.path.join(their_bundle, etcfiles.HOSTS))
            resolv = etcfiles.read_text(os.path.join(their_bundle, etcfiles.RESOLV))
    else:
        network = defs.ensure(store, arg, subnet)
        _set_netns(config, {"type": "network"})
        record.update(network=network.name, store=os.path.abspath(store))
        resolv = etcfiles.resolv_text(own_netns=True)
    _set_hooks(config, runtime, mode == "bridge")
    _set_mounts(config, bundle_dir)
    if _has_uts_ns(config):
        config["hostname"] = name
    for file, text in ((etcfiles.HOSTS, hosts), (etcfiles.HOSTNAME, f"{name}\n"),
                       (etcfiles.RESOLV, resolv)):
        etcfiles.write_in_place(os.path.join(bundle_dir, file), text)
    # Last: a bundle with network.json is one whose files and config are complete.
    write_atomic(os.path.join(bundle_dir, NETWORK_JSON), dump(record))


def read_record(bundle_dir: str) -> dict | None:
    """The bundle's network.json; None for a bundle made without a network mode."""
    path = os.path.join(bundle_dir, NETWORK_JSON)
    data = read_json(path, "network record")
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("mode"), str):
        raise NetworkError(f"network record {path} is corrupt (no mode): fix or remove it")
    if data["mode"] == "bridge" and not (isinstance(data.get("network"), str)
                                         and isinstance(data.get("store"), str)):
        raise NetworkError(f"network record {path} is corrupt (no network or store): fix or remove it")
    return data


def release(bundle_dir: str) -> None:
    """For ``bundle delete``: free what a crashed or never-run poststop left (leases, host veths).

    Idempotent; a bundle without network.json, or not in bridge mode, is a no-op.
    """
    bundle_dir = os.path.abspath(bundle_dir)
    record = read_record(bundle_dir)
    if record is None or record["mode"] != "bridge":
        return
    network = defs.load(record["store"], record["network"])
    if network is None:
        return  # the definition is gone, and with it every lease of the network
    with Leases(record["store"], network) as leases:
        held = leases.of_bundle(bundle_dir)
        if not held:
            return
        from ociruntime.network import link  # pyroute2: only when there is something to undo

        for cid, lease in held.items():
            link.delete_link(lease.veth)
            leases.free(cid)
