"""``ociruntime update [options] <container-id>``

With ``--resources FILE`` (``-``: standard input) the JSON document is the whole update and
the other options are ignored, as in runc.
"""

from __future__ import annotations

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

_FIELD_HELP = {
    "blkio-weight": "per cgroup weight, range is from 10 to 1000",
    "cpu-period": "CPU CFS period to be used for hardcapping (in usecs); 0 leaves it unchanged",
    "cpu-quota": "CPU CFS hardcap limit (in usecs); allowed cpu time in a given period",
    "cpu-burst": "CPU CFS burst limit (in usecs)",
    "cpu-share": "CPU shares (relative weight vs. other containers)",
    "cpu-rt-period": "CPU realtime period to be used for hardcapping (in usecs)",
    "cpu-rt-runtime": "CPU realtime hardcap limit (in usecs)",
    "cpuset-cpus": "CPU(s) to use",
    "cpuset-mems": "memory node(s) to use",
    "memory": "memory limit (bytes, or with a unit: 64m, 1g); -1 for unlimited",
    "memory-reservation": "memory reservation or soft limit (bytes or with a unit)",
    "memory-swap": "total memory usage (memory + swap); -1 for unlimited swap",
    "pids-limit": "maximum number of pids allowed in the container",
    "l3-cache-schema": "Intel RDT/CAT L3 cache schema (not supported)",
    "mem-bw-schema": "Intel RDT/MBA memory bandwidth schema (not supported)",
}
FLAGS = [
    Flag("resources", "str", aliases=("r",),
         help="path to a file with the resources to update, or '-' to read them from standard input"),
    *(Flag(name, "str", help=text) for name, text in _FIELD_HELP.items()),
]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("update", "[options] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.update import read_resources, resources_from_flags, update

    if p.resources:
        resources = read_resources(str(p.resources))
    else:
        resources = resources_from_flags({name: p.opts[name.replace("-", "_")] for name in _FIELD_HELP})
    update(ctx, p.args[0], resources)
    return 0
