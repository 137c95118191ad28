"""config.json reading: hostile files and hostile JSON each give one ConfigError line, never a hang."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ociruntime.errors import ConfigError
from ociruntime.spec import loader

MINIMAL = {
    "ociVersion": "1.0.2",
    "root": {"path": "rootfs"},
    "process": {"args": ["true"], "cwd": "/", "capabilities": {"bounding": ["CAP_KILL", "CAP_NEW"]}},
    "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]},
}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def write(bundle: Path, data: bytes | str) -> str:
    path = bundle / "config.json"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def error_of(path: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        loader.read_json_file(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_reads_valid_file(bundle: Path) -> None:
    assert loader.read_json_file(write(bundle, '{"a": [1, 2.5, "x", null, true]}')) == {
        "a": [1, 2.5, "x", None, True]
    }


def test_fifo_is_refused_without_blocking(bundle: Path) -> None:
    # No writer ever opens the FIFO: a blocking open(2) would hang the test forever.
    os.mkfifo(bundle / "config.json")
    assert error_of(str(bundle / "config.json")) == "config.json: not a regular file"


def test_symlink_is_refused(bundle: Path) -> None:
    target = bundle / "real.json"
    target.write_text("{}")
    os.symlink(target, bundle / "config.json")
    assert error_of(str(bundle / "config.json")) == "config.json: is a symbolic link"


def test_directory_is_refused(bundle: Path) -> None:
    (bundle / "config.json").mkdir()
    assert error_of(str(bundle / "config.json")) == "config.json: not a regular file"


def test_missing_file(bundle: Path) -> None:
    path = str(bundle / "config.json")
    assert error_of(path) == f"config.json: {path}: no such file or directory"


def test_what_names_the_file(bundle: Path) -> None:
    assert error_of(write(bundle, ""), what="state.json") == "state.json: file is empty"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("", "config.json: file is empty"),
        ("  \n", "config.json: file is empty"),
        ('{"ociVersion": "1.0', "config.json: invalid json at line 1 column 16: unterminated string"),
        ('{"a": 1,', "config.json: invalid json at line 1 column 9"),
        ("{]", "config.json: invalid json at line 1 column 2"),
        ('{"a": 1, "a": 2}', 'config.json: duplicate key "a"'),
        ('{"x": {"b": 1, "b": 1}}', 'config.json: duplicate key "b"'),
        ('{"a": NaN}', "config.json: NaN is not valid json"),
        ('{"a": -Infinity}', "config.json: -Infinity is not valid json"),
        ('{"a": 1e400}', "config.json: number 1e400 is out of range"),
        ('{"a": ' + "9" * 5000 + "}", "config.json: invalid json: exceeds the limit"),
        ("[" * 65 + "]" * 65, "config.json: nested more than 64 levels deep"),
        ("[" * 100000 + "]" * 100000, "config.json: nested more than 64 levels deep"),
        ('{"a":' * 100000 + "1" + "}" * 100000, "config.json: nested more than 64 levels deep"),
        (b"\xef\xbb\xbf{}", "config.json: invalid json at line 1 column 1: unexpected utf-8 bom"),
        (b'{"a": "\xff"}', "config.json: not valid utf-8 at byte 7"),
    ],
)
def test_bad_json(bundle: Path, data: str | bytes, fragment: str) -> None:
    assert fragment in error_of(write(bundle, data))


def test_depth_limit_is_exact(bundle: Path) -> None:
    assert loader.read_json_file(write(bundle, "[" * 64 + "]" * 64)) is not None


def test_size_cap(bundle: Path) -> None:
    path = write(bundle, json.dumps({"pad": "x" * 200}))
    assert error_of(path, max_bytes=100) == "config.json: larger than 100 bytes"
    assert loader.read_json_file(path, max_bytes=1000) == {"pad": "x" * 200}


@pytest.mark.parametrize(
    ("doc", "kind"),
    [("[]", "an array"), ('"x"', "a string"), ("3", "a number"), ("null", "null"), ("true", "a boolean")],
)
def test_load_config_needs_object(bundle: Path, doc: str, kind: str) -> None:
    write(bundle, doc)
    with pytest.raises(ConfigError) as info:
        loader.load_config(str(bundle))
    assert str(info.value) == f"config.json: top level must be a json object, not {kind}"


def test_load_config_ok_and_warns(bundle: Path) -> None:
    write(bundle, json.dumps(MINIMAL))
    warnings: list[str] = []
    doc = loader.load_config(str(bundle), warnings.append)
    assert doc == MINIMAL
    assert warnings == ['config.json: process.capabilities.bounding[1]: unknown capability "CAP_NEW"']


def test_load_config_without_warn_callback(bundle: Path) -> None:
    write(bundle, json.dumps(MINIMAL))
    assert loader.load_config(str(bundle)) == MINIMAL


def test_load_config_schema_error(bundle: Path) -> None:
    write(bundle, json.dumps({**MINIMAL, "process": {"args": "true", "cwd": "/"}}))
    with pytest.raises(ConfigError) as info:
        loader.load_config(str(bundle))
    assert str(info.value) == "config.json: process.args: 'true' is not of type 'array'"


def test_load_config_semantic_error_is_prefixed(bundle: Path) -> None:
    write(bundle, json.dumps({**MINIMAL, "process": {"args": ["true"], "cwd": "relative"}}))
    with pytest.raises(ConfigError) as info:
        loader.load_config(str(bundle))
    assert str(info.value) == 'config.json: process.cwd: cwd "relative" must be absolute'


def test_load_config_missing_process(bundle: Path) -> None:
    write(bundle, json.dumps({k: v for k, v in MINIMAL.items() if k != "process"}))
    with pytest.raises(ConfigError) as info:
        loader.load_config(str(bundle))
    assert str(info.value) == "config.json: process: is required"


def test_load_config_fifo(bundle: Path) -> None:
    os.mkfifo(bundle / "config.json")
    with pytest.raises(ConfigError, match=r"^config.json: not a regular file$"):
        loader.load_config(str(bundle))
