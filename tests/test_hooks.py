"""Tests for ociruntime.hooks: parsing/validation and running hooks with exact stdin/env/argv."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from ociruntime import hooks
from ociruntime.errors import ConfigError, HookError
from ociruntime.hooks import HOOK_KINDS, Hook, parse_hooks, run_hooks

SH = "/bin/sh"
STATE = {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 42, "bundle": "/b"}


def sh_hook(script: str, env: tuple[str, ...] = (), timeout: int | None = None) -> Hook:
    return Hook(path=SH, args=("sh", "-c", script), env=env, timeout=timeout)


# ------------------------------------------------------------------------------------------ parse


def test_parse_all_kinds_present_and_fields_converted() -> None:
    cfg = {
        "hooks": {
            "prestart": [{"path": "/bin/true"}],
            "poststop": [{"path": "/bin/x", "args": ["x", "-v"], "env": ["A=1", "B=x=y"], "timeout": 5}],
            "somethingNew": [{"path": "relative"}],
        }
    }
    hooks = parse_hooks(cfg)
    assert set(hooks) == set(HOOK_KINDS)
    assert hooks["prestart"] == (Hook("/bin/true", (), (), None),)
    assert hooks["poststop"] == (Hook("/bin/x", ("x", "-v"), ("A=1", "B=x=y"), 5),)
    assert hooks["createRuntime"] == ()
    assert parse_hooks({}) == {k: () for k in HOOK_KINDS}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"path": "bin/true"}, "hooks.createRuntime[0].path: must be an absolute path"),
        ({"path": ""}, "must be an absolute path"),
        ({}, "path: is required"),
        ({"path": 7}, "path: must be a string"),
        ({"path": "/bin/true\0x"}, "nul byte"),
        ({"path": "/bin/true", "timeout": 0}, "timeout: must be greater than zero"),
        ({"path": "/bin/true", "timeout": -3}, "timeout: must be greater than zero"),
        ({"path": "/bin/true", "timeout": True}, "timeout: must be an integer"),
        ({"path": "/bin/true", "timeout": 1.5}, "timeout: must be an integer"),
        ({"path": "/bin/true", "args": "true"}, "args: must be an array"),
        ({"path": "/bin/true", "args": ["a", 1]}, "args[1]: must be a string"),
        ({"path": "/bin/true", "env": ["NOEQUALS"]}, "env[0]: must be NAME=VALUE"),
        ({"path": "/bin/true", "env": ["=x"]}, "env[0]: must be NAME=VALUE"),
        ("not an object", "hooks.createRuntime[0]: must be an object"),
    ],
)
def test_parse_rejects(entry: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hooks({"hooks": {"createRuntime": [entry]}})
    assert fragment in str(info.value)


def test_parse_rejects_bad_containers() -> None:
    with pytest.raises(ConfigError, match="hooks: must be an object"):
        parse_hooks({"hooks": []})
    with pytest.raises(ConfigError, match=r"hooks\.poststart: must be an array"):
        parse_hooks({"hooks": {"poststart": {"path": "/bin/true"}}})


# -------------------------------------------------------------------------------------------- run


def test_state_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    run_hooks("prestart", [sh_hook(f"cat > {out}")], STATE)
    assert json.loads(out.read_text()) == STATE


def test_large_state_is_delivered_whole(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    state = dict(STATE, annotations={"big": "x" * 300_000})
    run_hooks("createRuntime", [sh_hook(f"cat > {out}")], state)
    assert json.loads(out.read_text()) == state


def test_hook_not_reading_stdin_succeeds() -> None:
    state = dict(STATE, annotations={"big": "x" * 300_000})
    run_hooks("poststart", [Hook("/bin/true", (), (), None)], state)


def test_env_is_exactly_hook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKY_SECRET", "1")
    out = tmp_path / "environ"
    env = ("PATH=/usr/bin:/bin", "FOO=bar=baz", "EMPTY=")
    # cp copies its own /proc/self/environ: exactly the envp the hook was exec'd with (a shell
    # would add PWD).
    run_hooks("prestart", [Hook("/bin/cp", ("cp", "/proc/self/environ", str(out)), env, None)], STATE)
    assert out.read_bytes().split(b"\0")[:-1] == [e.encode() for e in env]


def test_empty_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKY_SECRET", "1")
    out = tmp_path / "environ"
    run_hooks("prestart", [Hook("/bin/cp", ("cp", "/proc/self/environ", str(out)), (), None)], STATE)
    assert out.read_bytes() == b""


def test_args0_override(tmp_path: Path) -> None:
    out = tmp_path / "cmdline"
    hook = Hook(SH, ("custom-name", "-c", f"cp /proc/$$/cmdline {out}"), (), None)
    run_hooks("prestart", [hook], STATE)
    assert out.read_bytes().split(b"\0")[0] == b"custom-name"


def test_empty_args_uses_path_as_argv0(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    out = tmp_path / "argv0"
    script.write_text(f'#!/bin/sh\necho "$0" > {out}\n')
    script.chmod(0o755)
    run_hooks("prestart", [Hook(str(script), (), (), None)], STATE)
    assert out.read_text().strip() == str(script)


def test_cwd(tmp_path: Path) -> None:
    out = tmp_path / "cwd"
    run_hooks("prestart", [sh_hook(f"pwd > {out}")], STATE, cwd=str(tmp_path))
    assert out.read_text().strip() == str(tmp_path)


def test_exit_status_with_stdout_and_stderr() -> None:
    with pytest.raises(HookError) as info:
        run_hooks("createRuntime", [sh_hook("true"), sh_hook("echo boom; echo bang >&2; exit 3")], STATE)
    assert str(info.value) == "error running createRuntime hook #1: exit status 3, stdout: boom, stderr: bang"


def test_output_is_one_line() -> None:
    with pytest.raises(HookError) as info:
        run_hooks("prestart", [sh_hook("printf 'a\\nb\\n'; exit 1")], STATE)
    assert str(info.value) == "error running prestart hook #0: exit status 1, stdout: a b, stderr: "


def test_output_excerpt_is_bounded() -> None:
    script = "head -c 200000 /dev/zero | tr '\\0' a; head -c 100000 /dev/zero | tr '\\0' b >&2; exit 1"
    with pytest.raises(HookError) as info:
        run_hooks("prestart", [sh_hook(script)], STATE)
    assert str(info.value) == ("error running prestart hook #0: exit status 1, stdout: " + "a" * 512
                               + ", stderr: " + "b" * 512)


@pytest.mark.parametrize(("sig", "text"), [
    (signal.SIGKILL, "killed"),
    (signal.SIGTERM, "terminated"),
    (signal.SIGHUP, "hangup"),
    (signal.SIGUSR1, "user defined signal 1"),
    (signal.SIGRTMIN + 2, "signal 36"),
])
def test_killed_by_signal(sig: int, text: str) -> None:
    with pytest.raises(HookError) as info:
        run_hooks("poststop", [sh_hook(f"echo out; echo err >&2; kill -{int(sig)} $$")], STATE)
    assert str(info.value) == f"error running poststop hook #0: signal: {text}, stdout: out, stderr: err"


def test_wait_status_texts_are_go_s() -> None:
    # Raw wait statuses (wait(2) encoding): a core dump sets 0x80, as Go's "(core dumped)" reports.
    assert hooks._describe_status(6 | 0x80) == "signal: aborted (core dumped)"
    assert hooks._describe_status(11) == "signal: segmentation fault"
    assert hooks._describe_status(2 << 8) == "exit status 2"


def test_timeout_kills_hook(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(HookError) as info:
        run_hooks("prestart", [sh_hook(f"echo $$ > {pidfile}; exec sleep 10", timeout=1)], STATE)
    assert str(info.value) == "error running prestart hook #0: hook ran past specified timeout of 1.0s"
    pid = int(pidfile.read_text())
    # The hook was killed and reaped: its pid is no longer our child.
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_missing_binary(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(HookError) as info:
        run_hooks("startContainer", [Hook(missing, (), (), None)], STATE)
    assert str(info.value) == ("error running startContainer hook #0: "
                               f"fork/exec {missing}: no such file or directory")


def test_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "plain"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    with pytest.raises(HookError) as info:
        run_hooks("prestart", [Hook(str(script), (), (), None)], STATE)
    assert str(info.value) == f"error running prestart hook #0: fork/exec {script}: permission denied"


def test_first_failure_stops_the_list(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(HookError, match="hook #0"):
        run_hooks("prestart", [sh_hook("exit 1"), sh_hook(f"touch {marker}")], STATE)
    assert not marker.exists()


def test_on_error_reports_each_failure_and_goes_on(tmp_path: Path) -> None:
    """poststart/poststop: every hook runs; each failure is reported with its own number."""
    marker = tmp_path / "ran"
    seen: list[str] = []
    run_hooks("poststop", [sh_hook("exit 1"), sh_hook(f"touch {marker}"), sh_hook("exit 2")], STATE,
              on_error=lambda e: seen.append(str(e)))
    assert marker.exists()
    assert [m.split(":")[0] for m in seen] == ["error running poststop hook #0",
                                              "error running poststop hook #2"]


def _failure_report(hook: Hook) -> list[str]:
    """Run a hook that must fail and return the words of its stdout excerpt."""
    with pytest.raises(HookError) as info:
        run_hooks("prestart", [hook], STATE)
    return str(info.value).split(", stdout: ", 1)[1].split(", stderr: ", 1)[0].split()


def test_signals_reset_and_fds_closed() -> None:
    leaked = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(leaked, True)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    old_usr2 = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        # grep reports its own status as exec'd (a shell would clear its mask itself); the missing
        # second file makes it exit 2 so the output arrives in the error message.
        grep = ("grep", "-hs", "-E", "^Sig(Blk|Ign):", "/proc/self/status", "/nonexistent")
        signals = _failure_report(Hook("/bin/grep", grep, (), None))
        # The shell lists its own fds from a child process, without a redirection (which would
        # add a saved fd of the shell's own).
        fds = _failure_report(sh_hook("ls /proc/$$/fd; exit 1"))
    finally:
        os.close(leaked)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGUSR2, old_usr2)
    assert signals == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]
    assert sorted(int(x) for x in fds) == [0, 1, 2]


def test_sigpipe_disposition_restored() -> None:
    before = signal.getsignal(signal.SIGPIPE)
    run_hooks("prestart", [sh_hook("exit 0")], STATE)
    assert signal.getsignal(signal.SIGPIPE) == before


def test_runs_with_imports_blocked(tmp_path: Path) -> None:
    """In the init, imports are blocked: run_hooks must not import anything lazily."""
    out = tmp_path / "state.json"
    hooks_ok = [sh_hook(f"cat > {out}")]
    hooks_bad = [sh_hook("echo nope; exit 4")]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)

            class Blocker:
                def find_spec(self, name: str, *args: object) -> None:
                    raise ImportError(f"import of {name} blocked")

            sys.meta_path.insert(0, Blocker())
            run_hooks("createContainer", hooks_ok, STATE)
            try:
                run_hooks("startContainer", hooks_bad, STATE)
            except HookError as exc:
                os.write(w, str(exc).encode())
            code = 0
        except BaseException as exc:
            os.write(w, f"unexpected: {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        message = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, message
    assert message == "error running startContainer hook #0: exit status 4, stdout: nope, stderr: "
    assert json.loads(out.read_text()) == STATE


def test_no_hooks_is_a_noop() -> None:
    run_hooks("prestart", (), STATE)
