"""JSON text as Go's encoding/json writes it, for output that runc's clients read or compare.

``json.Marshal`` (logrus's JSONFormatter, ``runc list --format json`` through a json.Encoder)
writes no spaces after separators, leaves non-ASCII characters as UTF-8, escapes ``<``, ``>``
and ``&`` (HTML-safe by default) and the JavaScript line separators U+2028/U+2029, and replaces
each byte of invalid UTF-8 with U+FFFD.  Python strings hold such bytes as lone surrogates
(``os.fsdecode``'s surrogateescape), one per byte, so each becomes one U+FFFD here too.
"""

from __future__ import annotations

from ociruntime import jsonio

_ESCAPES = str.maketrans({
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
})


def dumps(value: object) -> str:
    """``value`` as Go's ``json.Marshal`` would encode it (no trailing newline)."""
    # The escaped characters can only occur inside strings in JSON text, so translating the
    # whole text is the same as escaping every string.
    text = jsonio.dumps(value, compact=True, ensure_ascii=False).translate(_ESCAPES)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text
