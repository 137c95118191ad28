"""The one exception hierarchy of ociruntime.

Every failure that reaches the user is an ``OCIError`` (or an ``OSError`` raised by a thin
syscall wrapper, which the top level turns into one).  Messages are lower case, name the path
or value at fault, and are printed exactly once, by ``ociruntime.cli.main``.  Each layer may add
context with :func:`OCIError.wrap` / :meth:`OCIError.context`; nothing else prints errors.
"""

from __future__ import annotations

import os


class OCIError(Exception):
    """Base of every runtime error: a one-line message and the process exit code."""

    exit_code: int = 1

    def __init__(self, msg: str, exit_code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.msg

    def context(self, prefix: str) -> OCIError:
        """Return the same error with ``prefix: `` in front of the message."""
        self.msg = f"{prefix}: {self.msg}"
        self.args = (self.msg,)
        return self


class ConfigError(OCIError):
    """config.json is unreadable, malformed, or asks for something invalid."""


class UsageError(OCIError):
    """Bad command line (unknown flag, missing argument)."""


class ContainerNotFound(OCIError):
    """No container with this id (wording matched by podman and containerd)."""

    def __init__(self, container_id: str = "") -> None:
        super().__init__("container does not exist")
        self.container_id = container_id


class ContainerExists(OCIError):
    """create/run with an id that is already in use."""


class StateError(OCIError):
    """The operation is not allowed in the container's current status."""


class InitError(OCIError):
    """The container init failed during setup; carries the step and errno from the child."""

    def __init__(self, msg: str, errno_: int = 0, step: str = "") -> None:
        super().__init__(msg)
        self.errno = errno_
        self.step = step


class HookError(OCIError):
    """A lifecycle hook failed or timed out."""


class ImageError(OCIError):
    """An image source or layer is unreadable, malformed, fails its digest, or is refused as unsafe."""


class NetworkError(OCIError):
    """A container network cannot be set up or torn down: bad mode, name or subnet, no free address,
    an unreadable network or lease file, a netlink failure in the hooks."""


def describe_oserror(exc: OSError, what: str = "") -> str:
    """Render an OSError as one lower-case-reason line: ``[what] call target: reason``.

    Thin wrappers raise ``OSError(errno, "call target: Strerror", path)``; plain ``os`` calls give
    ``OSError(errno, "Strerror", path)``.  Both become e.g. ``mount proc on /proc: permission denied``.
    """
    err = exc.errno or 0
    reason = os.strerror(err).lower() if err else str(exc)
    text = exc.strerror or ""
    std = os.strerror(err) if err else ""
    head = text[: -len(std)].rstrip(": ") if std and text.endswith(std) else ""
    target = str(exc.filename) if exc.filename is not None else ""
    if exc.filename2 is not None:
        target = f"{target} to {exc.filename2}"
    if head and target and target not in head:
        head = f"{head} {target}"
    elif not head:
        head = target
    if what:
        head = f"{what} {head}".strip()
    return f"{head}: {reason}" if head else reason


def from_oserror(exc: OSError, what: str = "") -> OCIError:
    """Wrap an OSError into an OCIError with a readable one-line message."""
    return OCIError(describe_oserror(exc, what))


class suppress:
    """``contextlib.suppress`` without `contextlib` (which imports `collections` and
    `functools`, ~3 ms, on create and run): ignore the given exception types in a block."""

    __slots__ = ("types",)

    def __init__(self, *types: type[BaseException]) -> None:
        self.types = types

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, value: object, tb: object) -> bool:
        return typ is not None and issubclass(typ, self.types)
