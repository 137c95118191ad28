"""``ociruntime list [--format table|json] [-q]``"""

from __future__ import annotations

import sys

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.errors import UsageError
from ociruntime.lifecycle.context import Context

FLAGS = [
    Flag("format", "str", aliases=("f",), default="table", help="table or json"),
    Flag("quiet", aliases=("q",), help="display only container ids"),
]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("list", "[options]", argv, FLAGS, (0, 0))
    if p is None:
        return 0
    from ociruntime.lifecycle.query import list_states

    states = list_states(ctx)
    if p.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif p.format == "json":
        from ociruntime import gojson
        from ociruntime.lifecycle.query import list_entry

        # runc encodes its slice with a json.Encoder: compact, one newline; no containers is a
        # nil slice, which Go writes as null.
        sys.stdout.write(gojson.dumps([list_entry(s) for s in states] or None) + "\n")
    elif p.format == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    else:
        raise UsageError(f'invalid format option "{p.format}": use table or json')
    return 0
