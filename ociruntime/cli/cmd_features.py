"""``ociruntime features``: print the features document as JSON."""

from __future__ import annotations

import json
import sys

from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("features", "", argv, [], (0, 0))
    if p is None:
        return 0
    from ociruntime.features import features

    sys.stdout.write(json.dumps(features(), indent=2) + "\n")
    return 0
