"""``ociruntime checkpoint [options] <container-id>`` (runc's flags; CRIU does the work)."""

from __future__ import annotations

from ociruntime.cli.args import Flag, Parsed
from ociruntime.cli.common import parse_command
from ociruntime.errors import UsageError
from ociruntime.lifecycle.context import Context

# The CRIU options checkpoint and restore share (runc's lists).
CRIU_FLAGS = [
    Flag("image-path", "str", default="", help="path for the criu image files (default ./checkpoint)"),
    Flag("work-path", "str", default="", help="path for criu's work files and logs (default: image path)"),
    Flag("tcp-established", help="allow open tcp connections"),
    Flag("ext-unix-sk", help="allow external unix sockets"),
    Flag("shell-job", help="allow shell jobs"),
    Flag("file-locks", help="handle file locks, for safety"),
    Flag("manage-cgroups-mode", "str", default="",
         help="cgroups mode: soft|full|strict|ignore (default: soft)"),
    Flag("empty-ns", "list", help="create a namespace, but don't restore its properties (network)"),
    Flag("auto-dedup", help="enable auto deduplication of memory images"),
    Flag("lazy-pages", help="use userfaultfd to lazily restore memory pages (not supported)"),
]

FLAGS = [
    *CRIU_FLAGS,
    Flag("parent-path", "str", default="",
         help="path of the previous (pre-dump) images, relative to --image-path"),
    Flag("leave-running", help="leave the process running after checkpointing"),
    Flag("tcp-skip-in-flight", help="skip in-flight tcp connections"),
    Flag("link-remap", help="allow one to link unlinked files back when possible"),
    Flag("pre-dump", help="dump the container's memory only, leave it running"),
    Flag("page-server", "str", default="", help="ADDRESS:PORT of the page server (not supported)"),
    Flag("status-fd", "int", default=-1, help="lazy-pages readiness fd (not supported)"),
]


def criu_options(p: Parsed):
    from ociruntime.criu import CriuOptions

    if p.lazy_pages:
        raise UsageError("--lazy-pages is not supported")
    opts = {k: getattr(p, k) for k in ("image_path", "work_path", "tcp_established", "ext_unix_sk",
                                        "shell_job", "file_locks", "manage_cgroups_mode", "auto_dedup")}
    for k in ("parent_path", "leave_running", "tcp_skip_in_flight", "link_remap", "pre_dump"):
        if k in p.opts:
            opts[k] = p.opts[k]
    return CriuOptions(**opts, empty_ns=tuple(p.empty_ns))  # type: ignore[arg-type]


def main(ctx: Context, argv: list[str]) -> int:
    p = parse_command("checkpoint", "[options] <container-id>", argv, FLAGS, (1, 1))
    if p is None:
        # podman takes `checkpoint --help` exiting 0 as "checkpoint supported": only with a criu
        # binary to run (whether criu works on this kernel is for `criu check` to say).
        from ociruntime.criu import resolve

        resolve(ctx.criu)
        return 0
    if p.page_server or p.status_fd != -1:
        raise UsageError("--page-server and --status-fd are not supported (no lazy migration)")
    from ociruntime.lifecycle.checkpoint import checkpoint

    checkpoint(ctx, p.args[0], criu_options(p))
    return 0
