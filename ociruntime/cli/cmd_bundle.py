"""``ociruntime bundle create|delete|list|mount``: bundles made from images (ociruntime/image/bundle.py).

    bundle create --image SRC[:REF] [options] DIR [ARG...]   ARGs replace the image's Cmd
    bundle delete DIR
    bundle mount DIR                                         mount an overlay rootfs again (reboot)
    bundle list [--store S] [--format table|json] [-q]
"""

from __future__ import annotations

import os
import shutil
import sys

from ociruntime.cli.args import Flag
from ociruntime.cli.common import parse_command
from ociruntime.errors import UsageError
from ociruntime.lifecycle.context import Context

STORE_HELP = ("data root: layer store, volumes, networks (default /var/lib/ociruntime; "
              "unprivileged: $XDG_DATA_HOME/ociruntime)")

CREATE_FLAGS = [
    Flag("image", "str", aliases=("i",), default="",
         help="OCI layout directory, oci-archive or docker/podman save tar, with :REF to pick an image"),
    Flag("name", "str", default="", help="container host name (default: DIR's base name)"),
    Flag("store", "str", default="", help=STORE_HELP),
    Flag("copy", help="copy the layers into DIR/rootfs, not an overlay mount (always when unprivileged)"),
    Flag("volume", "list", aliases=("v",), help="NAME:/path[:ro] named volume (repeatable)"),
    Flag("bind", "list", help="HOST:/path[:ro] bind mount (repeatable)"),
    Flag("tmpfs", "list", help="/path[:OPTIONS] tmpfs mount (repeatable)"),
    Flag("net", "str", default="none", help="none, host, container:ID or bridge[:NAME]"),
    Flag("subnet", "str", default="", help="subnet of a new bridge network (CIDR)"),
    Flag("entrypoint", "str", default=None, help="replace the image's Entrypoint (one word)"),
    Flag("env", "list", aliases=("e",), help="KEY=VALUE added to the image's Env (repeatable)"),
    Flag("user", "str", aliases=("u",), default=None, help="user[:group] instead of the image's User"),
    Flag("workdir", "str", aliases=("w",), default=None, help="working directory instead of the image's"),
    Flag("tty", aliases=("t",), help="process.terminal: true"),
    Flag("read-only", help="mount the rootfs read-only in the container"),
]
STORE_FLAGS = [Flag("store", "str", default="", help=STORE_HELP)]
LIST_FLAGS = [*STORE_FLAGS,
              Flag("format", "str", aliases=("f",), default="table", help="table or json"),
              Flag("quiet", aliases=("q",), help="display only bundle directories")]

SUBCOMMANDS = ("create", "delete", "list", "mount")


def runtime_path() -> str:
    """The ociruntime executable the bundle's network hooks will run."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.basename(argv0) != "__main__.py":
        path = os.path.abspath(argv0 if "/" in argv0 else shutil.which(argv0) or argv0)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("ociruntime")
    if not found:
        raise UsageError("cannot tell where the ociruntime executable is (for the network hooks)")
    return os.path.abspath(found)


def _store(value: object) -> str:
    """--store, else /var/lib/ociruntime; an unprivileged user's: $XDG_DATA_HOME/ociruntime
    (~/.local/share/ociruntime), as podman keeps a user's images in its home."""
    from ociruntime.image.bundle import DEFAULT_STORE

    if value:
        return str(value)
    if os.geteuid() == 0:
        return DEFAULT_STORE
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "ociruntime")


def main(ctx: Context, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(__doc__.split("\n\n", 1)[1] if argv else "")
        if not argv:
            raise UsageError(f"bundle: give one of {', '.join(SUBCOMMANDS)}")
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "create":
        return _create(ctx, rest)
    if sub == "delete":
        # --store is accepted for symmetry; bundle.json names the store the bundle was made in
        p = parse_command("bundle delete", "DIR", rest, STORE_FLAGS, (1, 1))
        if p is None:
            return 0
        from ociruntime.image.bundle import delete

        delete(p.args[0], ctx.root)
        return 0
    if sub == "mount":
        p = parse_command("bundle mount", "DIR", rest, [], (1, 1))
        if p is None:
            return 0
        from ociruntime.image.bundle import mount

        mount(p.args[0])
        return 0
    if sub == "list":
        return _list(rest)
    raise UsageError(f"bundle: unknown subcommand {sub!r} (use {', '.join(SUBCOMMANDS)})")


def _create(ctx: Context, argv: list[str]) -> int:
    # Flags stop at DIR: the words after it are the container's command (`sh -c ...`).
    p = parse_command("bundle create", "--image SRC[:REF] [options] DIR [ARG...]", argv, CREATE_FLAGS,
                      (1, 1 << 30), reorder=False)
    if p is None:
        return 0
    if not p.image:
        raise UsageError("bundle create: --image is required")
    from ociruntime.image.bundle import CreateOptions, create
    from ociruntime.image.volumes import parse_bind, parse_tmpfs, parse_volume

    vols = [parse_volume(str(v)) for v in p.volume]  # type: ignore[attr-defined]
    vols += [parse_bind(str(v)) for v in p.bind]  # type: ignore[attr-defined]
    vols += [parse_tmpfs(str(v)) for v in p.tmpfs]  # type: ignore[attr-defined]
    net = str(p.net)
    opts = CreateOptions(
        image=str(p.image), directory=p.args[0], name=str(p.name), store=_store(p.store), copy=bool(p.copy),
        volumes=vols, net=net, subnet=str(p.subnet) or None,
        args=list(p.args[1:]) or None,
        entrypoint=None if p.entrypoint is None else ([str(p.entrypoint)] if p.entrypoint else []),
        env=[str(e) for e in p.env],  # type: ignore[attr-defined]
        user=None if p.user is None else str(p.user),
        workdir=None if p.workdir is None else str(p.workdir),
        terminal=bool(p.tty), readonly=bool(p.read_only),
        runtime=runtime_path(), state_root=ctx.root)
    create(opts)
    return 0


def _list(argv: list[str]) -> int:
    p = parse_command("bundle list", "[options]", argv, LIST_FLAGS, (0, 0))
    if p is None:
        return 0
    from ociruntime.image.bundle import list_bundles

    bundles = list_bundles(_store(p.store))
    if p.quiet:
        sys.stdout.write("".join(b["dir"] + "\n" for b in bundles))
    elif p.format == "json":
        import json

        sys.stdout.write(json.dumps(bundles) + "\n")
    elif p.format == "table":
        rows = [("NAME", "IMAGE", "ROOTFS", "READY", "NETWORK", "CREATED", "DIR")]
        rows += [(b["name"], b["image"], b["rootfs"], "yes" if b["ready"] else "no", b["network"],
                  b["created"], b["dir"]) for b in bundles]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    else:
        raise UsageError(f'invalid format option "{p.format}": use table or json')
    return 0
