"""``ociruntime network up|down``: the hooks of bridge-mode bundles (ociruntime/network/hook.py).

Run by the runtime as createRuntime (up) and poststop (down) hooks, with the container state
JSON on stdin.  pyroute2 is imported only here, below the command's own dispatch.
"""

from __future__ import annotations

import sys

from ociruntime.cli.common import parse_command
from ociruntime.errors import UsageError
from ociruntime.lifecycle.context import Context

SYNOPSIS = "up|down  (an OCI hook: the container state JSON on stdin)"


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("network", SYNOPSIS, argv, [], (1, 1))
    if p is None:
        return 0
    verb = p.args[0]
    if verb not in ("up", "down"):
        raise UsageError(f"unknown network command {verb!r}: usage: ociruntime network {SYNOPSIS}")
    from ociruntime.network import hook

    raw = sys.stdin.buffer.read()
    if verb == "up":
        hook.up(raw)
    else:
        hook.down(raw)
    return 0
