"""``ociruntime resume <container-id>``"""

from __future__ import annotations

from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("resume", "<container-id>", argv, [], (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.pause import resume

    resume(ctx, p.args[0])
    return 0
