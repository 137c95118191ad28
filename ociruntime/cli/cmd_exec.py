"""``ociruntime exec [options] <container-id> <command> [args...]`` (or ``-p process.json``)."""

from __future__ import annotations

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.lifecycle.context import Context

FLAGS = [
    Flag("console-socket", "str", default="", help="AF_UNIX socket to send the pty master to"),
    Flag("cwd", "str", default="", help="current working directory in the container"),
    Flag("env", "list", aliases=("e",), help="set environment variables (repeatable)"),
    Flag("tty", aliases=("t",), help="allocate a pseudo-TTY"),
    Flag("user", "str", aliases=("u",), default="", help="UID (format: <uid>[:<gid>])"),
    Flag("additional-gids", "list", aliases=("g",), help="additional gids (repeatable)"),
    Flag("process", "str", aliases=("p",), default="", help="path to the process.json"),
    Flag("detach", aliases=("d",), help="detach from the container's process"),
    Flag("pid-file", "str", default="", help="file to write the process id to"),
    Flag("process-label", "str", default="", help="selinux process label (not supported)"),
    Flag("apparmor", "str", default="", help="apparmor profile (not supported)"),
    # A string, not a bool: unset keeps the container's noNewPrivileges (runc's IsSet).
    Flag("no-new-privs", "bool", default="", help="set the no new privileges value for the process"),
    Flag("cap", "list", aliases=("c",), help="add a capability to the bounding set (repeatable)"),
    Flag("preserve-fds", "int", default=0, help="pass N additional file descriptors (from fd 3)"),
    Flag("cgroup", "list", help="run the process in an existing sub-cgroup: [<controller>:]<cgroup>"),
    Flag("ignore-paused", help="allow exec in a paused container"),
]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("exec", "[options] <container-id> <command> [args...]  ||  -p process.json "
                      "<container-id>", argv, FLAGS, (1, 1 << 30), reorder=False)
    if p is None:
        return 0
    from ociruntime.lifecycle.exec import ExecOptions, exec_process

    nnp = p.no_new_privs
    opts = ExecOptions(
        args=tuple(p.args[1:]), process=str(p.process) or None, detach=bool(p.detach),
        pid_file=str(p.pid_file) or None, console_socket=str(p.console_socket) or None,
        tty=bool(p.tty), cwd=str(p.cwd) or None, env=tuple(p.env),  # type: ignore[arg-type]
        user=str(p.user) or None, additional_gids=tuple(p.additional_gids),  # type: ignore[arg-type]
        caps=tuple(p.cap), no_new_privs=None if nnp == "" else bool(nnp),  # type: ignore[arg-type]
        preserve_fds=int(p.preserve_fds), apparmor=str(p.apparmor) or None,  # type: ignore[call-overload]
        process_label=str(p.process_label) or None, ignore_paused=bool(p.ignore_paused),
        cgroup=tuple(p.cgroup))  # type: ignore[arg-type]
    return exec_process(ctx, p.args[0], opts)
