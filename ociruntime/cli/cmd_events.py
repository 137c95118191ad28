"""``ociruntime events [--stats] [--interval D] <container-id>``"""

from __future__ import annotations

import json
import sys
from typing import Any

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [
    Flag("interval", "str", default="5s", help="set the stats collection interval (Go duration)"),
    Flag("stats", help="display the container's stats then exit"),
]


def _emit(event: dict[str, Any]) -> None:
    # Compact, one object per line, flushed at once: a consumer reads the stream as it comes.
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("events", "[options] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.events import events, parse_duration

    events(ctx, p.args[0], parse_duration(str(p.interval)), bool(p.stats), _emit)
    return 0
