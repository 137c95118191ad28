"""``ociruntime restore [options] <container-id>`` (runc's flags; CRIU does the work)."""

from __future__ import annotations

import os

from ociruntime.cli.args import Flag
from ociruntime.cli.cmd_checkpoint import CRIU_FLAGS, criu_options
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [
    *CRIU_FLAGS,
    Flag("bundle", "str", aliases=("b",), default="", help="path to the bundle directory"),
    Flag("detach", aliases=("d",), help="detach from the container's process"),
    Flag("pid-file", "str", default="", help="file to write the restored init's pid to"),
    Flag("console-socket", "str", default="", help="AF_UNIX socket to send the pty master to"),
    Flag("no-subreaper", help="accepted for runc compatibility"),
    Flag("no-pivot", help="accepted for runc compatibility (the restored root is CRIU's)"),
    Flag("lsm-profile", "str", default="", help="LSM profile for the restored process (not supported)"),
    Flag("lsm-mount-context", "str", default="", help="LSM mount context (not supported)"),
]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("restore", "[options] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        return 0
    from ociruntime.errors import UsageError
    from ociruntime.lifecycle.restore import RestoreOptions, restore

    if p.lsm_profile or p.lsm_mount_context:
        raise UsageError("--lsm-profile and --lsm-mount-context are not supported (no LSM)")
    ropts = RestoreOptions(bundle=str(p.bundle) or os.getcwd(), pid_file=str(p.pid_file) or None,
                           console_socket=str(p.console_socket) or None, detach=bool(p.detach))
    return restore(ctx, p.args[0], criu_options(p), ropts)
