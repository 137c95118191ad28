"""``ociruntime create [options] <container-id>``"""

from __future__ import annotations

import os

from ociruntime.cli.args import Flag, Parsed
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [
    Flag("bundle", "str", aliases=("b",), default="", help="path to the bundle directory"),
    Flag("pid-file", "str", default="", help="file to write the container's init pid to"),
    Flag("console-socket", "str", default="", help="AF_UNIX socket to send the pty master to"),
    Flag("no-pivot", help="do not use pivot_root (use MS_MOVE + chroot)"),
    Flag("no-new-keyring", help="do not create a new session keyring"),
    Flag("preserve-fds", "int", default=0, help="pass N additional file descriptors (from fd 3)"),
]


def listen_fds() -> int:
    """Socket-activation fds passed to us (LISTEN_FDS for our pid) go on to the container."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return 0
        return max(0, int(os.environ.get("LISTEN_FDS", "0")))
    except ValueError:
        return 0


def options(p: Parsed):
    from ociruntime.lifecycle.create import CreateOptions

    return CreateOptions(bundle=str(p.bundle) or os.getcwd(), pid_file=str(p.pid_file) or None,
                         console_socket=str(p.console_socket) or None, no_pivot=bool(p.no_pivot),
                         no_new_keyring=bool(p.no_new_keyring), preserve_fds=int(p.preserve_fds),  # type: ignore[call-overload]
                         listen_fds=listen_fds())


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("create", "[options] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        return 0
    from ociruntime.lifecycle.create import create

    create(ctx, p.args[0], options(p))
    return 0
