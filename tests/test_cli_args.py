"""The Go-flag command-line grammar clients use (CLIENTS.md)."""

from __future__ import annotations

import pytest

from ociruntime.cli.args import Flag, parse
from ociruntime.errors import UsageError

FLAGS = [Flag("bundle", "str", aliases=("b",), default=""), Flag("detach", aliases=("d",)),
         Flag("preserve-fds", "int", default=0), Flag("env", "list", aliases=("e",))]


@pytest.mark.parametrize("argv", [
    ["--bundle", "/b", "id"], ["--bundle=/b", "id"], ["-bundle", "/b", "id"], ["-bundle=/b", "id"],
    ["-b", "/b", "id"],
])
def test_value_spellings(argv: list[str]) -> None:
    p = parse(argv, FLAGS)
    assert p.bundle == "/b" and p.args == ["id"]


def test_bools_ints_lists() -> None:
    p = parse(["-d", "--preserve-fds=2", "-e", "A=1", "--env", "B=2", "id"], FLAGS)
    assert p.detach is True and p.preserve_fds == 2 and p.env == ["A=1", "B=2"]
    assert parse(["--detach=false", "id"], FLAGS).detach is False


def test_stops_at_first_positional() -> None:
    p = parse(["id", "sh", "-c", "true"], FLAGS)
    assert p.args == ["id", "sh", "-c", "true"]
    assert parse(["--", "-x"], FLAGS).args == ["-x"]


@pytest.mark.parametrize(("argv", "msg"), [
    (["--nope"], "flag provided but not defined: -nope"),
    (["--bundle"], "flag needs an argument"),
    (["--preserve-fds", "x"], "invalid value"),
    (["--detach=maybe"], "invalid boolean"),
])
def test_errors(argv: list[str], msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        parse(argv, FLAGS)
