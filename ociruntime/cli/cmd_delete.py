"""``ociruntime delete [--force] <container-id>``"""

from __future__ import annotations

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [Flag("force", aliases=("f",), help="kill the container first if it is still running")]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("delete", "[--force] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.delete import delete

    delete(ctx, p.args[0], bool(p.force))
    return 0
