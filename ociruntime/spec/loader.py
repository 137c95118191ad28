"""Read config.json (and other small JSON files) defensively, then validate it.

``config.json`` is written by a trusted engine but carries image-derived values, and the bundle
directory may not be ours to trust: a FIFO named config.json makes a naive reader hang (runc
does), a symlink can point anywhere, and Python's ``json`` happily accepts ``NaN``, ``1e400``
(infinity) and duplicate keys (last one wins).  Every failure here is one ``ConfigError`` line.
"""

from __future__ import annotations

import errno
import math
import os
import stat

from ociruntime import jsonio
from ociruntime.errors import ConfigError, describe_oserror
from ociruntime.spec import schema, semantic

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MAX_DEPTH = 64
_READ_CHUNK = 1 << 16


def _open_regular(path: str, what: str) -> int:
    """Open ``path`` for reading without following a final symlink or blocking on a FIFO.

    O_NONBLOCK makes open(2) of a FIFO return at once instead of waiting for a writer; the
    fstat below then refuses it.  O_NOFOLLOW turns a symlink into ELOOP (open(2)).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise ConfigError(f"{what}: is a symbolic link") from None
        raise ConfigError(f"{what}: {describe_oserror(exc)}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"{what}: {describe_oserror(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError(f"{what}: not a regular file")
    return fd


def _read_capped(fd: int, what: str, max_bytes: int) -> bytes:
    """Read the whole file but never more than ``max_bytes`` (the file may grow while read)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
        except OSError as exc:
            raise ConfigError(f"{what}: {describe_oserror(exc)}") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise ConfigError(f"{what}: larger than {max_bytes} bytes")


def _no_duplicates(what: str) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, value in pairs:
            if key in result:
                raise ConfigError(f"{what}: duplicate key {jsonio.dumps(key)}")
            result[key] = value
        return result

    return hook


def _reject_constant(what: str) -> Callable[[str], object]:
    def hook(name: str) -> object:
        raise ConfigError(f"{what}: {name} is not valid json")

    return hook


def _finite_float(what: str) -> Callable[[str], float]:
    def hook(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ConfigError(f"{what}: number {text} is out of range")
        return value

    return hook


def _check_depth(doc: object, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than ``max_depth`` (iteratively: no recursion limit)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise ConfigError(f"{what}: nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)


def parse_json(data: bytes, what: str = "config.json") -> object:
    """Decode and parse ``data`` strictly (UTF-8, no duplicate keys, no NaN/Infinity, bounded depth)."""
    if not data.strip():
        raise ConfigError(f"{what}: file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: not valid utf-8 at byte {exc.start}") from None
    try:
        doc = jsonio.loads(
            text,
            object_pairs_hook=_no_duplicates(what),
            parse_constant=_reject_constant(what),
            parse_float=_finite_float(what),
        )
    except jsonio.JSONError as exc:
        raise ConfigError(
            f"{what}: invalid json at line {exc.lineno} column {exc.colno}: {exc.msg.lower()}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        # int() refuses numbers of more than 4300 digits (sys.set_int_max_str_digits).
        raise ConfigError(f"{what}: invalid json: {str(exc).lower()}") from None
    _check_depth(doc, what)
    return doc


def read_json_file(path: str, what: str = "config.json", max_bytes: int = 4 << 20) -> object:
    """Read and strictly parse the JSON file at ``path``; ``what`` names it in errors."""
    fd = _open_regular(path, what)
    try:
        data = _read_capped(fd, what, max_bytes)
    finally:
        os.close(fd)
    return parse_json(data, what)


def load_config(bundle: str, warn: Callable[[str], None] | None = None) -> dict:
    """Read ``<bundle>/config.json``, validate it against the schema and the semantic rules.

    ``warn`` receives one-line warnings (unknown capability names); errors raise ConfigError.
    """
    doc = read_json_file(os.path.join(bundle, "config.json"), "config.json")
    if not isinstance(doc, dict):
        raise ConfigError(f"config.json: top level must be a json object, not {_json_type(doc)}")
    schema.validate(doc, "config")
    prefixed = None if warn is None else (lambda msg: warn(f"config.json: {msg}"))
    try:
        semantic.check(doc, bundle, prefixed)
    except ConfigError as exc:
        raise exc.context("config.json") from None
    return doc


def load_process(path: str, warn: Callable[[str], None] | None = None) -> dict:
    """Read an ``exec --process`` file: a spec ``process`` object, held to config.json's rules."""
    doc = read_json_file(path, "process.json")
    if not isinstance(doc, dict):
        raise ConfigError(f"process.json: top level must be a json object, not {_json_type(doc)}")
    schema.validate(doc, "process")
    prefixed = None if warn is None else (lambda msg: warn(f"process.json: {msg}"))
    try:
        semantic.check_process_object(doc, prefixed)
    except ConfigError as exc:
        raise exc.context("process.json") from None
    return doc


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
