"""Container id validation: ids become directory names under ``--root`` and cgroup names."""

from __future__ import annotations

from ociruntime.errors import OCIError

# runc's allow-list [A-Za-z0-9_+.-]; bounded so that "<root>/<id>" and cgroup paths stay within
# NAME_MAX.  A set test rather than a regular expression: `re` costs ~6 ms to import, on every
# command.
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")


def validate_id(container_id: str) -> str:
    """Return ``container_id`` if it is safe as a single path component, else raise."""
    if (not 1 <= len(container_id) <= 255 or not _ID_CHARS.issuperset(container_id)
            or container_id in (".", "..")):
        shown = container_id if len(container_id) <= 64 else container_id[:64] + "..."
        raise OCIError(f'invalid container id "{shown}": use 1-255 characters from [A-Za-z0-9_+.-]')
    return container_id
