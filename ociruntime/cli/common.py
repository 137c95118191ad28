"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import sys

from ociruntime.cli.args import Flag, Parsed, parse, reorder_args, usage_text
from ociruntime.errors import UsageError

HELP = Flag("help", aliases=("h",), help="show help")


def parse_command(name: str, synopsis: str, argv: list[str], flags: list[Flag],
                  nargs: tuple[int, int], *, reorder: bool = True) -> Parsed | None:
    """Parse a subcommand; print help and return None for --help; check the positional count.

    ``reorder``: accept the command's flags after its positional arguments, as runc does for
    every command but ``exec`` and ``ps`` (whose trailing arguments belong to the process or
    to ps(1)).
    """
    table = [*flags, HELP]
    p = parse(reorder_args(argv, table) if reorder else argv, table)
    if p.help:
        sys.stdout.write(usage_text(name, synopsis, flags))
        return None
    lo, hi = nargs
    if not lo <= len(p.args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}" if hi < 1 << 30 else f"at least {lo}"
        raise UsageError(f'"{name}" requires {want} argument(s): usage: ociruntime {name} {synopsis}')
    return p
