"""Typed access to the ``linux.resources`` JSON values shared by the v1 and v2 writers.

config.json arrives as plain dicts; ``bool`` is an ``int`` in Python and JSON may carry floats
or strings where numbers belong, so every value is type-checked here before it is formatted
into a control file (SECURITY.md, "Integers and JSON").
"""

from __future__ import annotations

from ociruntime.errors import ConfigError

# Annotations only (postponed by `from __future__ import annotations`): `typing` and
# `collections.abc` cost ~4 ms to import on state/kill/delete, which rebuild a manager.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def section(resources: dict[str, Any], key: str) -> Any:
    """``resources[key]``, or None when absent or JSON null."""
    return resources.get(key)


def opt_int(
    d: dict[str, Any], key: str, where: str, lo: int | None = None, hi: int | None = None
) -> int | None:
    """An optional integer member, range-checked; bools and floats are refused."""
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}.{key}: must be an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        raise ConfigError(f"{where}.{key}: {v} is out of range {bounds}")
    return v


def opt_bool(d: dict[str, Any], key: str, where: str) -> bool | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise ConfigError(f"{where}.{key}: must be a boolean, got {v!r}")
    return v


def opt_str(d: dict[str, Any], key: str, where: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or "\0" in v or "\n" in v:
        raise ConfigError(f"{where}.{key}: must be a one-line string, got {v!r}")
    return v


def as_dict(v: Any, where: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: must be an object")
    return v


def as_list(v: Any, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{where}: must be an array")
    return v


def is_set(v: Any) -> bool:
    """Whether a resources section asks for anything (``{}``, ``[]`` and null do not)."""
    if isinstance(v, dict):
        return any(is_set(x) for x in v.values())
    if isinstance(v, list):
        return bool(v)
    return v is not None


U64 = 2**64 - 1
I64 = 2**63 - 1
