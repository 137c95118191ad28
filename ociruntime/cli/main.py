"""Entry point: global flags, the command table, and the one place errors are printed.

Subcommand modules are imported only when chosen: ``state``/``start``/``kill``/``delete`` run
three or more times per container, so they must not pay for jsonschema, pyseccomp or pyroute2.
"""

from __future__ import annotations

import _signal  # the C module: `signal` imports enum (~3 ms)
import os
import sys

from ociruntime import SPEC_VERSION, __version__
from ociruntime.cli.args import Flag, parse
from ociruntime.errors import OCIError, UsageError, describe_oserror
from ociruntime.lifecycle.context import DEFAULT_CACHE, DEFAULT_ROOT, Context
from ociruntime.log import LOG

GLOBAL_FLAGS = [
    Flag("root", "str", default=None,
         help=f"root directory for storage of container state (default {DEFAULT_ROOT}; "
              "$XDG_RUNTIME_DIR/ociruntime when rootless)"),
    Flag("log", "str", default="", help="log file path (default: stderr)"),
    Flag("log-format", "str", default="text", help="log format: text or json"),
    Flag("debug", help="enable debug logging"),
    Flag("systemd-cgroup", help='use the systemd cgroup driver: cgroupsPath is "slice:prefix:name"'),
    Flag("rootless", "str", default="auto", help="ignore cgroup permission errors (true, false, auto)"),
    Flag("criu", "str", default="criu", help="path to the criu binary for checkpoint and restore"),
    Flag("version", aliases=("v",), help="print the version"),
    Flag("help", aliases=("h",), help="show help"),
]

# command -> (module under ociruntime.cli, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("cmd_create", "create a container"),
    "start": ("cmd_start", "execute the user process in a created container"),
    "state": ("cmd_state", "output the state of a container"),
    "kill": ("cmd_kill", "send a signal to the container's init process"),
    "delete": ("cmd_delete", "delete a container and the resources it holds"),
    "run": ("cmd_run", "create and run a container"),
    "exec": ("cmd_exec", "execute new process inside the container"),
    "spec": ("cmd_spec", "create a new specification file"),
    "list": ("cmd_list", "list containers started with the given root"),
    "features": ("cmd_features", "show the enabled features"),
    "pause": ("cmd_pause", "suspend all processes inside the container"),
    "resume": ("cmd_resume", "resume all processes that have been previously paused"),
    "update": ("cmd_update", "update container resource constraints"),
    "ps": ("cmd_ps", "display the processes running inside a container"),
    "events": ("cmd_events", "display container events: OOM notifications and resource usage"),
    "checkpoint": ("cmd_checkpoint", "checkpoint a running container (CRIU)"),
    "restore": ("cmd_restore", "restore a container from a previous checkpoint (CRIU)"),
    "bundle": ("cmd_bundle", "make a bundle from an image: create, delete, list, mount"),
    "network": ("cmd_network", "bridge networking hooks of bundles: up (createRuntime), down (poststop)"),
}


def _usage() -> str:
    lines = ["usage: ociruntime [global options] command [command options] [arguments...]", "",
             "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "global options:"]
    lines += [f"  --{f.name:<16} {f.help}" for f in GLOBAL_FLAGS]
    return "\n".join(lines) + "\n"


def run(argv: list[str]) -> int:
    g = parse(argv, GLOBAL_FLAGS)
    if g.log_format not in ("text", "json"):
        raise UsageError(f'invalid log format "{g.log_format}": use text or json')
    LOG.configure(g.log or None, str(g.log_format), bool(g.debug))  # type: ignore[arg-type]
    if g.version:
        sys.stdout.write(f"ociruntime version {__version__}\nspec: {SPEC_VERSION}\n")
        return 0
    if g.help or not g.args:
        (sys.stdout if g.help else sys.stderr).write(_usage())
        return 0 if g.help else 1
    name, rest = g.args[0], g.args[1:]
    if name == "help":
        sys.stdout.write(_usage())
        return 0
    if name not in COMMANDS:
        raise UsageError(f"unknown command {name!r}: see 'ociruntime --help'")
    # A caller that ignores SIGCHLD would make the kernel reap our children behind our back
    # (waitpid then fails with ECHILD); the disposition is inherited, so put it back.
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    ctx = _context(g.root, bool(g.systemd_cgroup), str(g.rootless), str(g.criu))
    # __import__ rather than importlib.import_module: `importlib` imports `warnings`.
    module = __import__(f"ociruntime.cli.{COMMANDS[name][0]}", fromlist=["main"])
    return int(module.main(ctx, rest))


def _context(root: object, systemd_cgroup: bool, rootless_flag: str, criu: str = "criu") -> Context:
    """The global options; the state root as runc chooses it when --root is not given."""
    euid = os.geteuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if euid == 0 and not xdg and rootless_flag == "auto":
        # The host's root with runc's defaults, as engines call us: no rule of rootless.py can
        # apply (no XDG root to honour, --rootless valid), so every command skips importing it.
        return Context(root=DEFAULT_ROOT if root is None else str(root), systemd_cgroup=systemd_cgroup,
                       rootless=rootless_flag, criu=criu)
    from ociruntime import rootless

    rootless.parse_bool_or_auto(rootless_flag)  # a bad value is a usage error for every command
    in_userns = bool(xdg) and euid == 0 and rootless.in_user_namespace()
    cache = DEFAULT_CACHE
    if xdg and rootless.honour_xdg_runtime_dir(euid, in_userns, os.environ):
        cache = os.path.join(xdg, "ociruntime-cache")
    if root is None:
        root, xdg_used = rootless.default_root(DEFAULT_ROOT, euid, in_userns, os.environ)
        if xdg_used:
            rootless.prepare_xdg_root(root)
    return Context(root=str(root), systemd_cgroup=systemd_cgroup, rootless=rootless_flag, cache=cache,
                   criu=criu)


def main(argv: list[str] | None = None) -> int:
    """Run a command; print any error exactly once (stderr and the --log file)."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except OCIError as e:
        LOG.error(str(e))
        return e.exit_code
    except OSError as e:
        LOG.error(describe_oserror(e))
        return 1
    except KeyboardInterrupt:
        LOG.error("interrupted")
        return 130
    except Exception as e:
        if LOG.debug_enabled:
            import traceback

            LOG.debug(traceback.format_exc())
        LOG.error(f"internal error: {type(e).__name__}: {e}")
        return 1


def entry() -> None:
    """Console-script entry: flush, then exit without running atexit work in forked children."""
    code = main()
    try:
        sys.stdout.flush()
    except OSError:
        pass
    os._exit(code)
