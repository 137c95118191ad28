"""Container id validation: ids become directory names under ``--root`` and cgroup names."""

from __future__ import annotations

import re

from ociruntime.errors import OCIError

# runc's allow-list; bounded so that "<root>/<id>" and cgroup paths stay within NAME_MAX.
_ID_RE = re.compile(r"[A-Za-z0-9_+.-]{1,255}")


def validate_id(container_id: str) -> str:
    """Return ``container_id`` if it is safe as a single path component, else raise."""
    if not _ID_RE.fullmatch(container_id) or container_id in (".", ".."):
        shown = container_id if len(container_id) <= 64 else container_id[:64] + "..."
        raise OCIError(f'invalid container id "{shown}": use 1-255 characters from [A-Za-z0-9_+.-]')
    return container_id
