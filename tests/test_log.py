"""ociruntime.log and ociruntime.gojson: where each level goes, and Go-shaped JSON lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ociruntime import gojson
from ociruntime.log import Logger

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def test_json_lines_are_compact(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    lg = Logger()
    lg.configure(str(log), "json", False)
    lg.warning('bad "x" <y> & é')
    line = log.read_text()
    assert re.fullmatch(r'\{"level":"warning","msg":"bad \\"x\\" \\u003cy\\u003e \\u0026 é","time":"'
                        + TIME + r'"\}' + "\n", line), line
    assert json.loads(line)["msg"] == 'bad "x" <y> & é'


def test_debug_without_log_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    lg = Logger()
    lg.configure(None, "text", True)
    lg.debug("seccomp: cached")
    err = capsys.readouterr().err
    assert re.fullmatch(r'time="' + TIME + r'" level=debug msg="seccomp: cached"' + "\n", err), err
    lg.configure(None, "json", True)
    lg.debug("two\nlines")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and json.loads(err)["msg"] == "two\nlines"
    assert err.startswith('{"level":"debug","msg":"two\\nlines","time":"')


def test_debug_with_log_stays_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    lg = Logger()
    lg.configure(str(log), "json", True)
    lg.debug("quiet")
    assert capsys.readouterr().err == ""
    assert json.loads(log.read_text())["msg"] == "quiet"


def test_no_debug_without_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    lg = Logger()
    lg.configure(None, "text", False)
    lg.debug("hidden")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("value", "want"), [
    ({"a": [1, 2], "b": None, "c": True}, '{"a":[1,2],"b":null,"c":true}'),
    ("<&>", '"\\u003c\\u0026\\u003e"'),
    ("ü\u2028\u2029", '"ü\\u2028\\u2029"'),
    ("tab\t\x01", '"tab\\t\\u0001"'),
    # bytes that were not UTF-8 (os.fsdecode's surrogates): one U+FFFD per byte, as Go writes
    (b"/x\xff\xfe".decode("utf-8", "surrogateescape"), '"/x\ufffd\ufffd"'),
])
def test_gojson_matches_go_encoding(value: object, want: str) -> None:
    assert gojson.dumps(value) == want
