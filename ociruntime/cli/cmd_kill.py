"""``ociruntime kill [--all] <container-id> [signal]``"""

from __future__ import annotations

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [Flag("all", aliases=("a",), help="send the signal to every process in the container")]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("kill", "[--all] <container-id> [signal]", argv, FLAGS, (1, 2))
    if p is None:
        return 0
    from ociruntime.lifecycle.kill import kill

    kill(ctx, p.args[0], p.args[1] if len(p.args) > 1 else "SIGTERM", bool(p.all))
    return 0
