"""JSON-schema validation of config.json, state output and features output.

The schemas live in ``schemas/`` (written for this project from the runtime-spec v1.3.0 text,
slightly wider than the official ones where real engines need it: device ``fileMode`` with
file-type bits, ``rootfsPropagation: rslave``).  ``jsonschema`` costs 60-100 ms to import, so
it is imported only inside :func:`validate`, and only once :mod:`ociruntime.spec.fastcheck` (a
few ms) has rejected the document: a valid config never pays for it.  The ``state``/``start``/
``kill``/``delete`` commands never get here.  Compiled validators are cached per kind for the
life of the process.
"""

from __future__ import annotations

import os
import sys

from ociruntime import jsonio
from ociruntime.errors import ConfigError, OCIError

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# kind -> (root schema file, name used at the front of error messages)
KINDS: dict[str, tuple[str, str]] = {
    "config": ("config-schema.json", "config.json"),
    "state": ("state-schema.json", "state.json"),
    "features": ("features-schema.json", "features"),
    "process": ("process-schema.json", "process.json"),
}

# One line per error; a schema message quoting a whole object could otherwise run on for pages.
MAX_MESSAGE = 300

_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")


def _is_ident(part: str) -> bool:
    """``[A-Za-z_][A-Za-z0-9_]*`` (ASCII), without `re` on create's path."""
    return part[:1] in _IDENT_START and _IDENT_CHARS.issuperset(part)

_validators: dict[str, Any] = {}


def read_schemas(directory: str | os.PathLike[str]) -> list[tuple[str, str, Any]]:
    """(file name, full path, parsed JSON) of every ``*.json`` in ``directory``, sorted.

    The one reader for both validators (fastcheck and jsonschema); os, not pathlib: pathlib
    costs ~4 ms of imports on every create.
    """
    d = os.fspath(directory)
    out = []
    for name in sorted(n for n in os.listdir(d) if n.endswith(".json")):
        path = os.path.join(d, name)
        try:
            with open(path, encoding="utf-8") as f:
                out.append((name, path, jsonio.loads(f.read())))
        except (OSError, ValueError) as exc:
            raise OCIError(f"schema {path}: {exc}") from None
    return out


def schema_dirs() -> list[str]:
    """Where the schema files may be: the source tree first, then the installer's copy inside
    the package (``make install`` puts it there; the launcher runs without `site`, so
    ``sys.prefix`` is the base interpreter's, not the venv's), then ``sys.prefix``."""
    pkg = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    return [os.path.join(os.path.dirname(pkg), "schemas"), os.path.join(pkg, "schemas"),
            os.path.join(sys.prefix, "schemas")]


def find_schema_dir() -> str:
    """Return the first directory of :func:`schema_dirs` that holds the config schema."""
    for candidate in schema_dirs():
        if os.path.isfile(os.path.join(candidate, KINDS["config"][0])):
            return candidate
    searched = ", ".join(str(d) for d in schema_dirs())
    raise OCIError(f"json schemas not found (searched {searched})")


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """Render a path into a JSON document as ``linux.namespaces[2].type``.

    Keys that are not identifiers (annotation and sysctl names contain dots) are written as
    ``["key"]`` so the path stays unambiguous.
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_ident(part):
            out += f".{part}" if out else part
        else:
            out += f"[{jsonio.dumps(part)}]"
    return out


def _load_registry(directory: str | os.PathLike[str]) -> tuple[Any, dict[str, str]]:
    """Read every schema file into a ``referencing.Registry`` keyed by its ``$id``.

    Returns the registry and a map file name -> ``$id`` so a root schema can be looked up.
    """
    import referencing
    from referencing.jsonschema import DRAFT202012

    resources = []
    ids: dict[str, str] = {}
    for name, _path, contents in read_schemas(directory):
        resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
        ids[name] = contents["$id"]
    return referencing.Registry().with_resources(resources), ids


def _strict_integer(_checker: object, instance: object) -> bool:
    """JSON integers only: Python's ``True`` and ``1.0`` must not pass as uid 1."""
    return type(instance) is int


def _build_validator(kind: str) -> Any:
    import jsonschema

    registry, ids = _load_registry(find_schema_dir())
    root_file = KINDS[kind][0]
    if root_file not in ids:
        raise OCIError(f"json schema {root_file} not found")
    root = registry.contents(ids[root_file])
    base = jsonschema.Draft202012Validator
    # Draft 6+ counts 1.0 as an integer; a float uid would reach os.setuid() and fail late.
    checker = base.TYPE_CHECKER.redefine("integer", _strict_integer)
    cls = jsonschema.validators.extend(base, type_checker=checker)
    return cls(root, registry=registry)


def get_validator(kind: str = "config") -> Any:
    """Return the cached compiled validator for ``kind`` (building it on first use)."""
    if kind not in KINDS:
        raise ValueError(f"unknown schema kind {kind!r}")
    validator = _validators.get(kind)
    if validator is None:
        validator = _validators[kind] = _build_validator(kind)
    return validator


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def validate(doc: object, kind: str = "config") -> None:
    """Raise ``ConfigError`` naming the JSON path of the most relevant schema violation.

    ``kind`` is one of ``config``, ``state``, ``features``.  Example message:
    ``config.json: linux.namespaces[2].type: 'foo' is not one of [...]``.
    """
    # Imported here, not at the top: fastcheck imports this module for KINDS and the schema dir.
    from ociruntime.spec import fastcheck

    if fastcheck.is_valid(doc, kind):
        return
    # Rejected: only jsonschema says why (best_match picks the most relevant error and its path).
    from jsonschema.exceptions import best_match

    validator = get_validator(kind)
    error = best_match(validator.iter_errors(doc))
    what = KINDS[kind][1]
    if error is None:
        # Never accept a document one of the two checkers rejects: a disagreement is a bug here.
        raise ConfigError(
            f"{what}: internal error: the fast schema check rejects the document but jsonschema accepts it"
        )
    path = json_path(list(error.absolute_path))
    message = _one_line(error.message)
    raise ConfigError(f"{what}: {path}: {message}" if path else f"{what}: {message}")
