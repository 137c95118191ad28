"""``ociruntime ps [--format table|json] <container-id> [ps options]``"""

from __future__ import annotations

import json
import sys

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.errors import UsageError
from ociruntime.lifecycle.context import Context

FLAGS = [Flag("format", "str", aliases=("f",), default="table", help="select one of: table or json")]


def main(ctx: Context, argv: list[str]) -> int:
    # No reordering (runc's SkipArgReorder): whatever follows the id is for ps(1), `ps ID -f`.
    p = parse_command("ps", "[options] <container-id> [ps options]", argv, FLAGS, (1, 1 << 30), reorder=False)
    if p is None:
        return 0
    if p.format not in ("table", "json"):
        raise UsageError("invalid format option")
    from ociruntime.lifecycle.ps import container_pids, ps_table

    pids = container_pids(ctx, p.args[0])
    if p.format == "json":
        # containerd decodes exactly this: a JSON array of host pids.
        sys.stdout.write(json.dumps(pids) + "\n")
    else:
        sys.stdout.write(ps_table(pids, p.args[1:]))
    return 0
