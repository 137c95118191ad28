"""The pid file that create, run and exec --detach leave for the caller (CLIENTS.md)."""

from __future__ import annotations

import os

from ociruntime.errors import OCIError, suppress


def write_pid_file(path: str, pid: int) -> None:
    """The decimal pid, no newline (containerd parses it with Atoi), renamed into place."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        with suppress(OSError):
            os.unlink(tmp)
        raise OCIError(f"write pid file {path}: {os.strerror(e.errno or 0).lower()}") from None
