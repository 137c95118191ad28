"""The conformance driver's own logic (integration/conformance/run.py) on canned program output.

No root and no Go needed: TAP parsing, the program-level verdicts, expectation matching and the
summary line are pure functions of a program's exit status and text.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parents[1] / "integration" / "conformance" / "run.py"
_spec = importlib.util.spec_from_file_location("conformance_run", RUN_PY)
assert _spec and _spec.loader
run = importlib.util.module_from_spec(_spec)
sys.modules["conformance_run"] = run
_spec.loader.exec_module(run)

# As runtimetest prints it: YAML diagnostics after results, skips without a description.
RUNTIMETEST = """\
TAP version 13
ok 1 - has expected hostname
  ---
  {
    "actual": "mrsdalloway",
    "expected": "mrsdalloway"
  }
  ...
not ok 2 - has expected soft RLIMIT_NOFILE
  ---
  {
    "actual": 1024,
    "expected": 1025
  }
  ...
ok 3 # SKIP linux.uidMappings not set
not ok 4 - a known gap # TODO not implemented
1..4
"""

# As the hook programs print it: no results, the verdict in a YAML "error".
HOOK_ERROR = """\
TAP version 13
  ---
  {
    "error": "Hooks MUST be called in the listed order\\nRefer to: https://example/config.md#posix-platform-hooks"
  }
  ...
1..0
"""


def test_parse_results_descriptions_and_directives() -> None:
    (stream,) = run.parse_tap(RUNTIMETEST)
    assert stream.plan == 4
    assert [(c.number, c.ok, c.description, c.directive) for c in stream.checks] == [
        (1, True, "has expected hostname", ""),
        (2, False, "has expected soft RLIMIT_NOFILE", ""),
        (3, True, "linux.uidMappings not set", "SKIP"),
        (4, False, "a known gap", "TODO"),
    ]
    assert stream.checks[1].failed and not stream.checks[3].failed  # TODO failures do not count
    assert stream.checks[2].line() == "ok 3 - linux.uidMappings not set # SKIP linux.uidMappings not set"


def test_yaml_blocks_are_not_results() -> None:
    text = ("TAP version 13\nok 1 - a\n  ---\n  {\n    \"stdout\": \"not ok 7 - inner\\nok 8\"\n  }\n"
            "  ...\n1..1\n")
    (stream,) = run.parse_tap(text)
    assert [c.description for c in stream.checks] == ["a"]


def test_several_streams_each_with_its_plan() -> None:
    streams = run.parse_tap("TAP version 13\nok 1 - x\nok 2 - y\n1..2\nTAP version 13\n1..0\n")
    assert [(len(s.checks), s.plan) for s in streams] == [(2, 2), (0, 0)]
    result = run.evaluate("linux_cgroups_cpus", 0, "TAP version 13\nok 1 - x\nok 2 - y\n1..2\n"
                          "TAP version 13\n1..0\n", "")
    assert result.problems == [] and result.counts() == (2, 0, 0)


def test_evaluate_counts_and_plan() -> None:
    result = run.evaluate("default", 0, RUNTIMETEST, "")
    assert result.problems == []
    assert result.counts() == (1, 1, 2)


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "kind"),
    [
        (0, "", "", "no-tap"),  # the container's output was lost
        (0, "TAP version 13\nok 1 - a\nok 2 - b\n1..3\n", "", "plan"),  # fewer results than planned
        (0, "TAP version 13\nok 1 - a\n", "", "plan"),  # died before its plan
        (0, "TAP version 13\nok 2 - a\nok 1 - b\n1..2\n", "", "plan"),  # numbering
        (1, "", "failed to create the container\nlinux.mountLabel: no selinux\n", "exit"),
        (-9, "TAP version 13\nok 1 - a\n", "", "exit"),
        (None, "TAP version 13\nok 1 - a\n", "", "timeout"),
    ],
)
def test_program_level_problems(returncode: int | None, stdout: str, stderr: str, kind: str) -> None:
    result = run.evaluate("default", returncode, stdout, stderr, seconds=5)
    assert [p.kind for p in result.problems] == [kind]
    if kind == "exit" and stderr:
        assert "linux.mountLabel: no selinux" in result.problems[0].detail


def test_no_tap_names_what_the_container_said() -> None:
    result = run.evaluate("default", 0, "", "", container_stderr="[c1] ociruntime init: boom\n")
    (problem,) = result.problems
    assert problem.kind == "no-tap"
    assert problem.detail.endswith("container stderr: [c1] ociruntime init: boom")
    exps = run.parse_expectations("default | <no-tap> *init: boom* | why\n")
    verdict = run.Verdict()
    run.judge(result, exps, verdict)
    assert verdict.failed == [] and len(verdict.expected) == 1


def test_hook_programs_report_yaml_errors_as_checks() -> None:
    result = run.evaluate("hooks", 0, HOOK_ERROR, "")
    assert result.problems == []
    (check,) = result.checks
    assert not check.ok and check.description == "<error> Hooks MUST be called in the listed order"
    assert "posix-platform-hooks" in check.detail
    # The same program without an error passes as one check.
    passed = run.evaluate("poststop", 0, "TAP version 13\n1..0\n", "")
    assert [(c.ok, c.description) for c in passed.checks] == [(True, run.NO_ERROR)]


def test_yaml_error_mangled_by_printf_is_still_found() -> None:
    # tap-go uses the JSON as a printf format: a "%" in it breaks the JSON.
    text = 'TAP version 13\n  ---\n  {\n    "error": "bad 50%!v(MISSING)",\n    "x": %!\n  }\n  ...\n1..0\n'
    (check,) = run.evaluate("poststart", 0, text, "").checks
    assert check.description == "<error> bad 50%!v(MISSING)"


def test_negative_programs_pass_when_create_fails() -> None:
    name = "process_rlimits_fail"
    ok = run.evaluate(name, 0, "", "failed to create the container\nrlimit RLIMIT_TEST unknown\n")
    assert ok.problems == [] and [(c.ok, c.description) for c in ok.checks] == [
        (True, run.NEGATIVE_PROGRAMS[name])]
    ran = run.evaluate(name, 1, RUNTIMETEST, "The runtime MUST generate an error\n")
    assert ran.problems == [] and [c.ok for c in ran.checks] == [False]
    assert ran.checks[0].detail.startswith("the container ran, exit status 1")
    # Exit 0 for another reason (here: start failed) is no pass.
    other = run.evaluate(name, 0, "", "failed to start the container\n")
    assert [c.ok for c in other.checks] == [False]
    assert "stopped before create failed" in other.checks[0].detail


EXPECTED = """\
# comment
linux_cgroups_memory | memory kernel is set correctly | kernel memory accounting is deprecated
default | #2 | by number
default | #4 has expected * | number and pattern
hooks | <error> Hooks MUST be called in the listed order | the test's expected string is wrong
linux_ns_itype | <leftover mounts> | shares the host mount namespace
"""


def test_expectation_matching() -> None:
    exps = run.parse_expectations(EXPECTED)
    assert [e.lineno for e in exps] == [2, 3, 4, 5, 6]
    find = run.find_expectation
    assert find(exps, "linux_cgroups_memory", 42, "memory kernel is set correctly") is exps[0]
    assert find(exps, "linux_cgroups_memory", 42, "memory kernel is set") is None  # whole text
    assert find(exps, "linux_cgroups_relative_memory", 6, "memory kernel is set correctly") is None
    assert find(exps, "default", 2, "anything") is exps[1]
    assert find(exps, "default", 4, "has expected soft RLIMIT_NOFILE") is exps[2]
    assert find(exps, "default", 5, "has expected soft RLIMIT_NOFILE") is None
    assert find(exps, "default", 4, "has no such thing") is None
    assert find(exps, "hooks", None, "<error> Hooks MUST be called in the listed order") is exps[3]
    assert find(exps, "linux_ns_itype", None, "<leftover mounts>") is exps[4]


@pytest.mark.parametrize("bad", ["default | #2", "default | | why", "a | b | c | d"])
def test_malformed_expectation_lines_are_refused(bad: str) -> None:
    with pytest.raises(run.ExpectationError, match="line 1"):
        run.parse_expectations(bad + "\n")


def test_judge_counts_unexpected_expected_and_now_passing() -> None:
    exps = run.parse_expectations(
        "default | has expected soft RLIMIT_NOFILE | x\n"
        "default | has expected hostname | fixed since\n"
        "default | <plan> | y\n")
    verdict = run.Verdict()
    result = run.evaluate("default", 0, RUNTIMETEST.replace("1..4\n", "1..5\n"), "")
    lines = run.judge(result, exps, verdict)
    # ok 1 passes although listed; not ok 2 is expected; the TODO is no failure (counted with the
    # skips); the plan is listed.
    assert verdict.passed == 1 and verdict.skipped == 2
    assert verdict.failed == []
    assert [e.label() for _, _, e in verdict.expected] == [
        "default | has expected soft RLIMIT_NOFILE", "default | <plan>"]
    assert exps[1].matched_pass == 1 and exps[1].matched_fail == 0
    assert any(line.startswith("  xfail  not ok 2") for line in lines)
    assert run.summary_line(verdict) == "conformance: 1 passed, 0 failed, 2 expected failures"

    unlisted = run.Verdict()
    lines = run.judge(run.evaluate("default", 0, RUNTIMETEST, ""), [], unlisted)
    assert unlisted.failed == [("default", "not ok 2 - has expected soft RLIMIT_NOFILE")]
    assert lines == ["  FAIL   not ok 2 - has expected soft RLIMIT_NOFILE"]
    assert run.summary_line(unlisted) == "conformance: 1 passed, 1 failed, 0 expected failures"


def test_leftover_cgroups_are_attributed_by_id_or_suite_path() -> None:
    ids = {"0b9e2a3c-6a43-4bd8-9f0e-1d2c3b4a5f60"}
    assert run.ours("/memory/0b9e2a3c-6a43-4bd8-9f0e-1d2c3b4a5f60", ids)
    assert run.ours("/pids/testdir/cgrouptest/container", ids)
    assert run.ours("/cpu/cgrouptest", set())
    assert run.ours("/cpu/testdir", set(), parents=True) and not run.ours("/cpu/testdir", set())
    assert not run.ours("/memory/someone-elses-container", ids)
    assert not run.ours("/memory/0b9e2a3c-6a43-4bd8-9f0e-1d2c3b4a5f60-x", ids)


def test_the_repository_expectations_parse() -> None:
    exps = run.parse_expectations(run.DEFAULT_EXPECTED.read_text())
    assert all(e.reason for e in exps)
    assert len({e.label() for e in exps}) == len(exps), "duplicate entries"


def test_wrapper_records_commands_configs_and_container_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "fake-runtime"
    argv_log = tmp_path / "argv"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {argv_log}\n")
    fake.chmod(0o755)
    bundle = tmp_path / "bundle dir"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"ociVersion": "1.3.0"}')
    (bundle / "stderr-1234").write_text("ociruntime init: close fds: boom\n")
    wrapper = run.Wrapper(str(fake))
    try:
        for args in (["create", "--pid-file", "/x", "--bundle", str(bundle), "c1"], ["start", "c1"],
                     ["delete", "c1"], ["delete", "--force", "c1"]):
            subprocess.run([str(wrapper.path), *args], check=True)
        root = f"--root {wrapper.root}"
        assert argv_log.read_text().splitlines() == [
            f"{root} create --pid-file /x --bundle {bundle} c1", f"{root} start c1", f"{root} delete c1",
            f"{root} delete --force c1"]
        keep = tmp_path / "kept"
        commands, ids, stderr = wrapper.take_records(keep)
        assert commands[0] == f"create --pid-file /x --bundle {bundle} c1" and len(commands) == 4
        assert ids == {"c1"} and (keep / "c1.json").read_text() == '{"ociVersion": "1.3.0"}'
        assert stderr == "[c1] ociruntime init: close fds: boom\n"  # once, at the first delete
        assert wrapper.take_records() == ([], set(), "")
    finally:
        wrapper.remove()
    assert not wrapper.dir.exists()
