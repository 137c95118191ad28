"""``ociruntime run [options] <container-id>``"""

from __future__ import annotations

from ociruntime.cli.args import Flag
from ociruntime.cli.cmd_create import FLAGS as CREATE_FLAGS
from ociruntime.cli.cmd_create import options
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [
    *CREATE_FLAGS,
    Flag("detach", aliases=("d",), help="detach from the container's process"),
    Flag("keep", help="do not delete the container after it exits"),
    Flag("no-subreaper", help="accepted for runc compatibility"),
]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("run", "[options] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.run import run

    return run(ctx, p.args[0], options(p), detach=bool(p.detach), keep=bool(p.keep))
