"""Run a test body in a forked child with private namespaces, so the test runner's own mounts
and namespaces are never changed; the child's result or exception comes back through a pipe."""

from __future__ import annotations

import ctypes
import json
import os
import traceback
from collections.abc import Callable

from ociruntime.linux import mount as m
from ociruntime.linux.libc import LIBC
from ociruntime.linux.ns import CLONE_NEWCGROUP, CLONE_NEWNET, CLONE_NEWNS

__all__ = ["CLONE_NEWCGROUP", "CLONE_NEWNET", "CLONE_NEWNS", "ChildError", "mountinfo", "run_in_child"]


class ChildError(Exception):
    """The child raised: ``out`` has its type name, errno, message, strerror, filename, traceback."""

    def __init__(self, out: dict) -> None:
        super().__init__(f"{out['error']}: {out['msg']}\n{out['tb']}")
        self.out = out


def mountinfo() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def run_in_child(fn: Callable[[], object], flags: int = CLONE_NEWNS) -> object:
    """Run ``fn`` after unshare(flags) and making "/" rslave; return its (JSON) result."""
    before = mountinfo()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            if LIBC.unshare(ctypes.c_int(flags)) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            m.mount(None, "/", None, m.MS_SLAVE | m.MS_REC)
            out = {"ok": fn()}
        except BaseException as e:  # reported to the parent
            out = {"error": type(e).__name__, "errno": getattr(e, "errno", None), "msg": str(e),
                   "strerror": getattr(e, "strerror", None), "filename": getattr(e, "filename", None),
                   "tb": traceback.format_exc()}
        finally:
            os.write(w, json.dumps(out).encode())
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    assert mountinfo() == before, "the test runner's mounts changed"
    out = json.loads(b"".join(chunks))
    if "error" in out:
        raise ChildError(out)
    return out["ok"]
