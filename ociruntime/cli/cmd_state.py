"""``ociruntime state <container-id>``"""

from __future__ import annotations

import sys

from ociruntime import jsonio
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("state", "<container-id>", argv, [], (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.query import state

    sys.stdout.write(jsonio.dumps_indent(state(ctx, p.args[0])) + "\n")
    return 0
