"""Container networking for bundles: ``--net none | host | container:ID | bridge[:NAME]``.

``bundle create`` calls :func:`ociruntime.network.bundle.configure` to rewrite the bundle's
config.json for the mode, and ``bundle delete`` calls :func:`~ociruntime.network.bundle.release`.
Modes:

* ``none``: a new network namespace with only ``lo`` (the runtime brings it up).
* ``host``: no network namespace; hosts and resolv.conf are the host's.
* ``container:ID``: the namespace of a created or running container (``/proc/PID/ns/net``).
* ``bridge[:NAME]``: a new namespace joined to bridge NAME (default ``oci0``, 10.89.0.0/24) by a
  veth pair that the ``network up`` createRuntime hook makes and ``network down`` (poststop)
  removes.  No port publishing, no NAT: containers reach each other and the gateway only.

Bridge mode, in the namespace the runtime runs in (the "host")::

      host network namespace (where the runtime and its hooks run)
    +------------------------------------------------------------+
    |  oci0: bridge, up, 10.89.0.1/24 (the gateway)              |
    |    |                      |                                |
    |  veth<hash(id1)>        veth<hash(id2)>   host ends: up,   |
    |    |                      |               ports of oci0    |
    +----|----------------------|--------------------------------+
         | veth pair            | veth pair
    +----|-----------+     +----|-----------+
    |  eth0          |     |  eth0          |   container network namespaces
    |  10.89.0.2/24  |     |  10.89.0.3/24  |   (/proc/PID/ns/net of each init);
    |  lo            |     |  lo            |   default route via 10.89.0.1
    +----------------+     +----------------+
      container id1         container id2       (container:id1 joins id1's namespace)

Modules (only link.py imports pyroute2; it is imported by the hooks and by ``release``):

* bundle.py  -- configure/release: namespaces, hooks, /etc bind mounts, network.json
* defs.py    -- network definitions (``<store>/networks/NAME.json``), name and subnet checks
* ipam.py    -- the lease file of a network (flock, crash-safe rewrite, reuse per container id)
* etcfiles.py -- the bundle's hosts, hostname, resolv.conf (hosts rewritten in place by ``up``)
* fileio.py  -- atomic writes, JSON reads with one-line errors, lock files
* link.py    -- netlink: bridge, veth pair, eth0 address and route, deletion
* hook.py    -- ``ociruntime network up|down`` (cli/cmd_network.py)

Files: ``<bundle>/{hosts,hostname,resolv.conf,network.json}``;
``<store>/networks/{NAME.json,NAME.leases,NAME.lock,.defs.lock}`` (store: /var/lib/ociruntime).
"""
