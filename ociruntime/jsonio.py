"""JSON text in and out on CPython's C codec (``_json``), without the ``json`` package.

Why not ``import json``: ``json.decoder`` compiles regular expressions at import, pulling in
``re`` and ``enum`` — about 11 ms on the development VM, more than everything else ``state``,
``start``, ``kill`` or ``delete`` do.  The C scanner and encoder underneath are what ``json``
itself uses for the work; this module gives them the few lines of set-up ``json`` would.

Errors: invalid text raises :class:`JSONError` (a ``ValueError``, as ``json.JSONDecodeError``
is; the C scanner itself may raise ``json.JSONDecodeError`` for a bad string, which imports
``json.decoder`` only then, on the error path).  Callers catch ``ValueError``.
"""

from __future__ import annotations

import _json
import sys

_WS = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class JSONError(ValueError):
    """Text that is not one JSON value: ``msg`` at character ``pos`` (line ``lineno``, column
    ``colno``, both from 1), the attributes of ``json.JSONDecodeError``."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        self.msg = msg
        self.pos = pos
        self.lineno = doc.count("\n", 0, pos) + 1
        self.colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {self.lineno} column {self.colno} (char {pos})")


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    def __init__(self, object_pairs_hook: object = None, parse_constant: object = None,
                 parse_float: object = None) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = object_pairs_hook
        self.parse_float = parse_float or float
        self.parse_int = int
        self.parse_constant = parse_constant or _CONSTANTS.__getitem__
        self.memo: dict = {}


_SCAN = _json.make_scanner(_Context())


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def loads(text: str | bytes, object_pairs_hook: object = None, parse_constant: object = None,
          parse_float: object = None) -> object:
    """Parse one JSON value; bytes must be UTF-8 (a ``UnicodeDecodeError`` is a ValueError).

    The hooks are ``json.loads``'s; exceptions they raise pass through unchanged.
    """
    s = text.decode() if isinstance(text, (bytes, bytearray)) else text
    if object_pairs_hook is None and parse_constant is None and parse_float is None:
        scan = _SCAN
    else:
        scan = _json.make_scanner(_Context(object_pairs_hook, parse_constant, parse_float))
    if s.startswith("\ufeff"):
        raise JSONError("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
    i = _skip_ws(s, 0)
    try:
        value, end = scan(s, i)
    except StopIteration as e:
        raise JSONError("Expecting value", s, e.value) from None
    except ValueError as e:
        # The C scanner's own json.JSONDecodeError (a bad string or delimiter): same fields.
        if type(e).__name__ == "JSONDecodeError":
            raise JSONError(e.msg, s, e.pos) from None  # type: ignore[attr-defined]
        raise
    except SystemError:
        # The C scanner builds its errors from json.decoder.JSONDecodeError, which it looks up
        # in sys.modules without importing it; absent, it fails with a SystemError.  Invalid
        # text is the rare path: import it now and parse again for the real error.
        if "json.decoder" in sys.modules:
            raise
        import json.decoder  # noqa: F401

        return loads(s, object_pairs_hook, parse_constant, parse_float)
    end = _skip_ws(s, end)
    if end != len(s):
        raise JSONError("Extra data", s, end)
    return value


def _encoder(ascii_only: bool, key_sep: str, item_sep: str, sort_keys: bool) -> object:
    quote = _json.encode_basestring_ascii if ascii_only else _json.encode_basestring

    def default(o: object) -> object:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    return _json.make_encoder({}, default, quote, None, key_sep, item_sep, sort_keys, False, True)


_COMPACT = _encoder(True, ":", ",", False)
_SPACED = _encoder(True, ": ", ", ", False)
_SPACED_UTF8 = _encoder(False, ": ", ", ", False)


def dumps(value: object, *, compact: bool = False, ensure_ascii: bool = True,
          sort_keys: bool = False) -> str:
    """``json.dumps`` with the same output: ``", "``/``": "`` separators, or none if ``compact``."""
    if sort_keys or (compact and not ensure_ascii):
        enc = _encoder(ensure_ascii, ":" if compact else ": ", "," if compact else ", ", sort_keys)
    elif compact:
        enc = _COMPACT
    else:
        enc = _SPACED if ensure_ascii else _SPACED_UTF8
    return "".join(enc(value, 0))  # type: ignore[operator]


def dumps_indent(value: object, indent: str = "  ", ensure_ascii: bool = True) -> str:
    """Indented output as ``json.dumps(value, indent=...)`` writes it (Go's MarshalIndent too)."""
    leaf = _COMPACT if ensure_ascii else _encoder(False, ":", ",", False)
    out: list[str] = []

    def walk(v: object, pad: str) -> None:
        if isinstance(v, dict) and v:
            inner = pad + indent
            out.append("{")
            for n, (k, item) in enumerate(v.items()):
                out.append(("," if n else "") + "\n" + inner)
                if not isinstance(k, str):
                    raise TypeError(f"keys must be str, not {type(k).__name__}")
                out.extend(leaf(k, 0))  # type: ignore[operator]
                out.append(": ")
                walk(item, inner)
            out.append("\n" + pad + "}")
        elif isinstance(v, (list, tuple)) and v:
            inner = pad + indent
            out.append("[")
            for n, item in enumerate(v):
                out.append(("," if n else "") + "\n" + inner)
                walk(item, inner)
            out.append("\n" + pad + "]")
        else:
            out.extend(leaf(v, 0))  # type: ignore[operator]

    walk(value, "")
    return "".join(out)
