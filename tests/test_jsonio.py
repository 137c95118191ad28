"""ociruntime.jsonio: the C codec without the json package must read and write as json does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ociruntime import jsonio

VALUES = [
    None, True, False, 0, -1, 2**64, 1.5, -0.0, 1e300, "", "a\"b\\c\n\t\x00", "é€😀", "\ud800x",
    [], {}, [[]], {"a": {}}, {"k": [1, 2, {"x": None}], "é": "ü"}, [1, "2", [3.25, {"4": [5]}]],
    {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 42, "annotations": {}},
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_matches_json(value: object) -> None:
    assert jsonio.dumps(value) == json.dumps(value)
    assert jsonio.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
    assert jsonio.dumps(value, ensure_ascii=False) == json.dumps(value, ensure_ascii=False)
    assert jsonio.dumps(value, compact=True, ensure_ascii=False) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False)
    assert jsonio.dumps(value, sort_keys=True) == json.dumps(value, sort_keys=True)
    assert jsonio.dumps_indent(value) == json.dumps(value, indent=2)
    assert jsonio.dumps_indent(value, "\t") == json.dumps(value, indent="\t")
    assert jsonio.dumps_indent(value, ensure_ascii=False) == json.dumps(value, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("value", VALUES)
def test_loads_round_trip(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=4), f" \n\t{json.dumps(value)}\r\n "):
        assert jsonio.loads(text) == json.loads(text)
        assert jsonio.loads(text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")) \
            == json.loads(text)


def test_loads_constants_and_pairs_hook() -> None:
    assert jsonio.loads("[NaN, Infinity, -Infinity]")[1:] == [float("inf"), float("-inf")]
    pairs: list = []
    jsonio.loads('{"a": 1, "a": 2}', object_pairs_hook=lambda p: pairs.append(p) or dict(p))
    assert pairs == [[("a", 1), ("a", 2)]]


@pytest.mark.parametrize("text", ["", " ", "{", "[1,]", '{"a" 1}', "1 2", '"abc', "tru", '{"a":1}x',
                                  "[1] [2]", '"\x01"', "01", "{'a': 1}", "\ufeff{}"])
def test_loads_rejects_what_json_rejects(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsonio.loads(text)


def test_loads_bytes_must_be_utf8() -> None:
    assert jsonio.loads(b'{"a": "\xc3\xa9"}') == {"a": "é"}
    with pytest.raises(ValueError):
        jsonio.loads(b'"\xff"')


def test_unserializable_raises_type_error() -> None:
    with pytest.raises(TypeError):
        jsonio.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsonio.dumps_indent({1: "x"})


def test_import_pulls_in_neither_re_nor_enum() -> None:
    repo = str(Path(jsonio.__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {repo!r}); import ociruntime.jsonio; "
            "print(sorted({'re', 'enum', 'json'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text", ['{\n  "a": 1,\n  "b": [1, 2,, 3]\n}', '{"a": "x\ny"}', "[1,\n2]\n\nx",
                                  '{\n"a" 1}', "", "   \n  "])
def test_error_position_matches_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(text)
    with pytest.raises(jsonio.JSONError) as got:
        jsonio.loads(text)
    assert (got.value.msg, got.value.pos, got.value.lineno, got.value.colno) == (
        want.value.msg, want.value.pos, want.value.lineno, want.value.colno)


def test_hooks_reach_the_scanner() -> None:
    with pytest.raises(ZeroDivisionError):
        jsonio.loads("[1.5]", parse_float=lambda s: 1 / 0)
    assert jsonio.loads("[NaN]", parse_constant=lambda s: s) == ["NaN"]


def test_errors_without_the_json_package_loaded() -> None:
    # The runtime never imports json; the C scanner's error path must still give a ValueError.
    repo = str(Path(jsonio.__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {repo!r}); from ociruntime import jsonio\n"
            "for text in ['{\"a\": 1', '[1, 2', '{\"a\" 1}', '\"abc', '[1,]', '{\"a\": \"\\x01\"}']:\n"
            "    try:\n        jsonio.loads(text)\n    except jsonio.JSONError as e:\n"
            "        print(e.lineno, e.colno, e.msg)\n    else:\n        print('parsed', text)\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 6 and not any(line.startswith("parsed") for line in lines), out
