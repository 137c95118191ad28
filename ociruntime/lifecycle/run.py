"""``run``: create + start, and in the foreground wait for the container and exit with its status."""

from __future__ import annotations

import os

from ociruntime.errors import OCIError, suppress
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.create import CreateOptions, create
from ociruntime.lifecycle.delete import destroy
from ociruntime.lifecycle.start import start
from ociruntime.lifecycle.wait import SignalForwarder, exit_code, wait_child
from ociruntime.state.store import Store


def run(ctx: Context, container_id: str, opts: CreateOptions, detach: bool, keep: bool) -> int:
    if detach:
        create(ctx, container_id, opts)
        _start_or_destroy(ctx, container_id)
        return 0
    proxy = None
    if not opts.console_socket and _wants_terminal(opts.bundle):
        # No console socket: we act as the console client (runc does the same), also when our
        # own stdin is not a terminal (then no raw mode, just the copying).
        import tempfile  # only for a console of our own: it imports random, shutil, ...

        from ociruntime.lifecycle.console_proxy import ConsoleProxy

        proxy = ConsoleProxy(tempfile.mkdtemp(prefix="ociruntime-console-"))
        opts = CreateOptions(**{**opts.__dict__, "console_socket": proxy.path, "console_proxy": True})
    try:
        return _run_foreground(ctx, container_id, opts, keep, proxy)
    finally:
        if proxy is not None:
            proxy.close()
            with suppress(OSError):
                os.rmdir(os.path.dirname(proxy.path))


def _wants_terminal(bundle: str) -> bool:
    from ociruntime.spec.loader import read_json_file

    try:
        cfg = read_json_file(os.path.join(bundle or ".", "config.json"))
    except OCIError:
        return False  # create reports the problem properly
    proc = cfg.get("process") if isinstance(cfg, dict) else None
    return isinstance(proc, dict) and proc.get("terminal") is True


def _run_foreground(ctx: Context, container_id: str, opts: CreateOptions, keep: bool,
                    proxy: object | None) -> int:
    rec = create(ctx, container_id, CreateOptions(**{**opts.__dict__, "keep_subreaper": True}))
    pid = rec.pid
    if proxy is not None:
        try:
            proxy.receive()  # type: ignore[attr-defined]
        except OSError:
            with Store(ctx.root).open(container_id) as cdir:
                destroy(cdir, cdir.load())
            raise
    forward = SignalForwarder(skip_winch=proxy is not None)
    forward.install()
    forward.target(pid)
    try:
        _start_or_destroy(ctx, container_id)
        if proxy is not None:
            proxy.pump()  # type: ignore[attr-defined]
        status = wait_child(pid)
    finally:
        forward.restore()
    if not keep:
        with Store(ctx.root).open(container_id) as cdir:
            destroy(cdir, cdir.load())
    return exit_code(status)


def _start_or_destroy(ctx: Context, container_id: str) -> None:
    try:
        start(ctx, container_id)
    except OCIError:
        with suppress(OCIError, OSError), Store(ctx.root).open(container_id) as cdir:
            destroy(cdir, cdir.load())
        raise
