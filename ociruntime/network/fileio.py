"""Small files of the network code: crash-safe replacement, JSON reads with one-line errors, flock.

Network definitions and lease files are rewritten whole: a temp file beside the target is
written, fsync'ed and renamed over it, then the directory is fsync'ed, so after a crash at any
point the target holds the old or the new content, never a torn one.  A temp file left by a
killed writer (``.NAME.<pid>.tmp``) is ignored by readers and removed by the next writer, which
holds the lock that the dead one held.
"""

from __future__ import annotations

import fcntl
import json
import os

from ociruntime.errors import NetworkError, describe_oserror

TMP_SUFFIX = ".tmp"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: str) -> None:
    """Remove the temp files of earlier writers of ``path``; the caller holds its lock."""
    directory, name = os.path.split(path)
    prefix = f".{name}."
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for entry in names:
        if entry.startswith(prefix) and entry.endswith(TMP_SUFFIX):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the directory."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(directory)


def dump(value: object) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def read_json(path: str, what: str) -> object | None:
    """The JSON value in ``path``; None when the file does not exist.

    A file that exists but is not JSON (truncated by outside damage, edited by hand) is a
    NetworkError naming it: guessing its content could hand one address to two containers.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NetworkError(describe_oserror(e, f"read {what}")) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        what_went_wrong = e.msg.lower().removesuffix(" starting at")
        reason = "empty" if not raw.strip() else f"{what_went_wrong} at line {e.lineno} column {e.colno}"
        raise NetworkError(f"{what} {path} is corrupt ({reason}): fix or remove it") from None
    except ValueError:  # UnicodeDecodeError
        reason = "not UTF-8"
        raise NetworkError(f"{what} {path} is corrupt ({reason}): fix or remove it") from None


class FileLock:
    """flock(2) on a lock file that is never removed (removing it would let two holders lock
    different inodes); the data files beside it are replaced by rename, so they cannot be locked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> FileLock:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing the only descriptor drops the lock
        self.fd = -1
