"""``ociruntime spec [--rootless] [--bundle DIR]``: write a default config.json."""

from __future__ import annotations

import json
import os

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.errors import OCIError
from ociruntime.lifecycle.context import Context

FLAGS = [
    Flag("bundle", "str", aliases=("b",), default="", help="directory to write config.json to"),
    Flag("rootless", help="generate a configuration for a rootless container"),
]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("spec", "[options]", argv, FLAGS, (0, 0))
    if p is None:
        return 0
    from ociruntime.spec.default import default_config

    path = os.path.join(str(p.bundle) or ".", "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise OCIError("File config.json exists. Remove it first.") from None
    with os.fdopen(fd, "w") as f:
        json.dump(default_config(rootless=bool(p.rootless)), f, indent="\t")
        f.write("\n")
    return 0
