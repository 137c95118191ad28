"""Reading and writing cgroupfs control files, with errors that name the file and the value.

cgroupfs files are pseudo-files: a value must reach the kernel in ONE write(2) (a short or
split write would be parsed as two values), they must never be created (a missing file means
the controller is absent or the kernel lacks the feature, and creating it would hide that),
and a symlink planted in a cgroup directory must not redirect the write.  Hence
``O_WRONLY|O_NOFOLLOW|O_CLOEXEC`` without ``O_CREAT`` and a single ``os.write``.

Every writer module calls ``files.write`` through the module (not a ``from`` import) so tests
can record the exact sequence of writes.
"""

from __future__ import annotations

import errno
import os

from ociruntime.errors import ConfigError, OCIError

# errnos that mean "the value or the request is wrong", as opposed to a system failure.
_CONFIG_ERRNOS = frozenset({errno.EINVAL, errno.ERANGE, errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV})


def _reason(exc: OSError) -> str:
    return (exc.strerror or os.strerror(exc.errno or 0)).lower()


class InvalidValue(ConfigError):
    """The kernel refused the value or the file is missing; ``errno`` says which, so a writer can
    retry inter-dependent files in the other order on EINVAL (as runc does)."""

    def __init__(self, msg: str, errno_: int) -> None:
        super().__init__(msg)
        self.errno = errno_


class WriteFailed(OCIError):
    """Any other refused write; ``errno`` lets a caller pick a fallback (exec on EBUSY)."""

    def __init__(self, msg: str, errno_: int) -> None:
        super().__init__(msg)
        self.errno = errno_


def _failure(path: str, value: str, exc: OSError) -> OCIError:
    msg = f'write {path}: "{value}": {_reason(exc)}'
    if exc.errno == errno.ENOENT:
        msg += " (the controller file is missing: controller not enabled or kernel feature absent)"
    if exc.errno in _CONFIG_ERRNOS:
        return InvalidValue(msg, exc.errno or 0)
    return WriteFailed(msg, exc.errno or 0)


def write(dirpath: str, name: str, value: str) -> None:
    """Write ``value`` to ``dirpath/name`` in one write(2); raise an error naming both."""
    path = os.path.join(dirpath, name)
    data = value.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _failure(path, value, exc) from None
    try:
        written = os.write(fd, data)
    except OSError as exc:
        raise _failure(path, value, exc) from None
    finally:
        os.close(fd)
    if written != len(data):
        raise OCIError(f'write {path}: "{value}": short write ({written} of {len(data)} bytes)')


def read(dirpath: str, name: str) -> str:
    """Return the content of ``dirpath/name`` without the trailing newline."""
    path = os.path.join(dirpath, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError(f"read {path}: {_reason(exc)}") from None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:
        raise OCIError(f"read {path}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace").rstrip("\n")


def read_int(dirpath: str, name: str) -> int:
    """Read a control file holding one integer ("max" is returned as -1)."""
    text = read(dirpath, name).strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        raise OCIError(f"read {os.path.join(dirpath, name)}: not an integer: {text!r}") from None


def exists(dirpath: str, name: str) -> bool:
    """Whether the control file exists (without following a symlink)."""
    return os.path.lexists(os.path.join(dirpath, name))
