"""The Go-flag command-line grammar clients use (CLIENTS.md)."""

from __future__ import annotations

import pytest

from ociruntime.cli import main
from ociruntime.cli.args import Flag, parse, reorder_args
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


# ---- flags after the container id (urfave/cli v1 reorderArgs, runc's grammar) -----------------


@pytest.mark.parametrize(("argv", "want"), [
    (["id", "--bundle", "/b"], ["--bundle", "/b", "id"]),
    (["id", "-b=/b", "-d"], ["-b=/b", "-d", "id"]),
    (["--bundle", "/b", "id"], ["--bundle", "/b", "id"]),
    # unknown dashed words stay where they are: they are positional to cli
    (["id", "--nope", "-9"], ["id", "--nope", "-9"]),
    # a flag without "=" takes the next word along, even a boolean one (cli's quirk)
    (["id", "-d", "x"], ["-d", "x", "id"]),
    (["id", "-d", "-e", "A=1"], ["-d", "-e", "A=1", "id"]),
    # nothing moves after "--", which goes in front of the positional arguments
    (["id", "--", "-d"], ["--", "id", "-d"]),
    (["a", "-e", "x", "--", "b", "-d"], ["-e", "x", "--", "a", "b", "-d"]),
    # ... unless "--" directly follows a flag: then it is that flag's value, and moves
    (["a", "-d", "--", "b", "-e", "x"], ["-d", "--", "-e", "x", "a", "b"]),
    (["id", "-"], ["id", "-"]),
])
def test_reorder_args_like_urfave_cli_v1(argv: list[str], want: list[str]) -> None:
    assert reorder_args(argv, FLAGS) == want


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Run commands through the real command table with the lifecycle functions recorded."""
    from ociruntime.lifecycle import delete, events, kill, ps, update

    seen: list[tuple] = []
    monkeypatch.setattr(delete, "delete", lambda ctx, cid, force: seen.append(("delete", cid, force)))
    monkeypatch.setattr(kill, "kill", lambda ctx, cid, sig, all_: seen.append(("kill", cid, sig, all_)))
    monkeypatch.setattr(update, "update", lambda ctx, cid, res: seen.append(("update", cid, res)))
    monkeypatch.setattr(ps, "container_pids", lambda ctx, cid: seen.append(("ps", cid)) or [])
    monkeypatch.setattr(ps, "ps_table", lambda pids, args: seen.append(("ps-args", args)) or "")
    monkeypatch.setattr(events, "events", lambda ctx, cid, interval, once, emit:
                        seen.append(("events", cid, interval, once)))
    return seen


def test_flags_after_the_id(calls: list[tuple]) -> None:
    assert main.run(["delete", "c1", "--force"]) == 0
    assert main.run(["delete", "c2", "-f=false"]) == 0
    assert main.run(["kill", "c3", "KILL", "--all"]) == 0
    assert main.run(["update", "c4", "--memory", "1M", "--pids-limit=5"]) == 0
    assert main.run(["events", "c5", "--stats", "--interval", "1s"]) == 0
    assert calls == [
        ("delete", "c1", True),
        ("delete", "c2", False),
        ("kill", "c3", "KILL", True),
        ("update", "c4", {"memory": {"limit": 1 << 20}, "pids": {"limit": 5}}),
        ("events", "c5", 1.0, True),
    ]


def test_flags_after_the_id_follow_cli_quirks(calls: list[tuple]) -> None:
    # runc 1.x: the boolean takes "KILL" along, which ends up first: KILL is the id.
    assert main.run(["kill", "c1", "--all", "KILL"]) == 0
    assert calls == [("kill", "KILL", "c1", True)]
    # An unknown flag after the id stays an argument: one too many for delete.
    with pytest.raises(UsageError, match='"delete" requires 1 argument'):
        main.run(["delete", "c1", "--bogus"])


def test_help_after_the_id(calls: list[tuple], capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["delete", "c1", "--help"]) == 0
    assert "usage: ociruntime delete" in capsys.readouterr().out and calls == []


def test_ps_keeps_everything_after_the_id(calls: list[tuple]) -> None:
    # runc's ps sets SkipArgReorder: `ps ID -f` hands -f to ps(1), and so does --format here.
    assert main.run(["ps", "c1", "-f", "--format", "json"]) == 0
    assert calls == [("ps", "c1"), ("ps-args", ["-f", "--format", "json"])]



def test_exec_keeps_everything_after_the_id(monkeypatch) -> None:
    """exec's trailing arguments belong to the process: `exec ID sh -c x -e B=2` keeps `-e`."""
    import ociruntime.lifecycle.exec as ex
    from ociruntime.cli import cmd_exec
    from ociruntime.lifecycle.context import Context

    seen: dict = {}
    monkeypatch.setattr(ex, "exec_process", lambda _ctx, cid, opts: seen.update(cid=cid, opts=opts) or 0)
    assert cmd_exec.main(Context(), ["-e", "A=1", "cid", "sh", "-c", "x", "-e", "B=2"]) == 0
    assert seen["cid"] == "cid"
    assert seen["opts"].args == ("sh", "-c", "x", "-e", "B=2") and seen["opts"].env == ("A=1",)
