"""Run the OCI runtime-tools validation suite against a runtime and judge it (``make conformance``).

The suite (opencontainers/runtime-tools, built by the Makefile into ``build/runtime-tools``) is 58
programs ``validation/<name>/<name>.t``.  Each builds bundles under ``/tmp/ocitest*``, drives the
runtime named by ``$RUNTIME`` through its command line and prints TAP; most run ``/runtimetest``
inside the container, whose TAP becomes the program's.  This driver runs every program from the
tree's top with a timeout and fails on:

* a ``not ok`` check that ``expected-failures.txt`` (beside this file) does not list;
* a program that prints no TAP, whose ``1..N`` plan is missing or does not match its results, that
  exits with a non-zero status or a signal, or that times out;
* leftovers after a program: mounts under ``/tmp/ocitest*``, cgroups the run created, state
  directories under the runtime's root, processes of its containers.  They are cleaned up (lazy
  unmount, ``delete --force``, SIGKILL, rmdir) and still reported.

The runtime runs through a small wrapper script that adds ``--root <private dir>`` (so the run
never sees another user's containers and every state directory left is ours) and records each
command line and each created container's config, which is how leftover cgroups and processes
are attributed to the run while other containers come and go on the machine.

Listed checks that pass now are printed (not a failure), as are list entries that matched no
check.  The last line is ``conformance: N passed, M failed, K expected failures`` (M counts
unexpected ``not ok`` checks plus program-level problems); the exit status is 0 only when M is 0.

Usage (as root, standard library only)::

    /usr/bin/python3 integration/conformance/run.py --tree build/runtime-tools \\
        [--runtime /usr/local/bin/ociruntime | /usr/sbin/runc] [--timeout 240] [-v] \\
        [--out DIR] [--expected FILE | --no-expected] [PROGRAM ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_EXPECTED = HERE / "expected-failures.txt"
DEFAULT_TREE = REPO / "build" / "runtime-tools"
BUNDLE_PREFIX = "/tmp/ocitest"
# The suite's own cgroupsPath values (runtime-tools cgroups/cgroups.go: AbsCgroupPath
# "/cgrouptest" and RelCgroupPath "testdir/cgrouptest/container"); containers without one get
# their id as the path, which the wrapper records.
SUITE_CGROUP_NAME = "cgrouptest"
SUITE_CGROUP_PARENT = "testdir"
CGROUP_ROOT = Path("/sys/fs/cgroup")

TAP_VERSION = re.compile(r"^TAP version \d+")
TAP_RESULT = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(.*)$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)\b")
TAP_DIRECTIVE = re.compile(r"(?:^|\s)#\s*(SKIP|TODO)\b\s*(.*)$", re.IGNORECASE)
YAML_ERROR = re.compile(r'^\s*"error":\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)

# Programs that pass when the runtime refuses the config: they run util.RuntimeInsideValidate and
# call util.Fatal (exit 1, the statement on stderr) only when the container ran; a refused create
# prints "failed to create the container" and the runtime's error on stderr, nothing on stdout,
# and exits 0 (as does any other failure, which is why that line is required).  Each is judged
# as one check named by the statement it tests.
NEGATIVE_PROGRAMS = {
    "process_capabilities_fail": "Any value which cannot be mapped to a relevant kernel interface MUST cause "
                                 "an error (bounding capability CAP_TEST)",
    "process_rlimits_fail": "The runtime MUST generate an error for any values which cannot be mapped to a "
                            "relevant kernel interface (rlimit RLIMIT_TEST)",
}
NO_ERROR = "<no error reported>"
CREATE_FAILED = "failed to create the container"


# ---- TAP ----------------------------------------------------------------------------------------

@dataclass
class Check:
    """One TAP result line, or a check the driver derives from a program's output."""

    number: int | None
    ok: bool
    description: str  # without the "- " prefix; for a skip without description, the reason
    directive: str = ""  # "SKIP" or "TODO" (upper case) or ""
    reason: str = ""  # the directive's text
    detail: str = ""  # shown with a failure: what the program said about it

    @property
    def skipped(self) -> bool:
        return self.directive == "SKIP"

    @property
    def failed(self) -> bool:
        """A ``not ok`` that counts: TODO failures do not (TAP semantics)."""
        return not self.ok and self.directive != "TODO"

    def line(self) -> str:
        text = "ok" if self.ok else "not ok"
        if self.number is not None:
            text += f" {self.number}"
        if self.description:
            text += f" - {self.description}"
        if self.directive and (self.reason or not self.description):
            text += f" # {self.directive} {self.reason}".rstrip()
        return text


@dataclass
class Stream:
    """One TAP document: a program may print several (one per ``tap.New()``)."""

    checks: list[Check] = field(default_factory=list)
    plan: int | None = None
    skip_all: str | None = None  # "1..0 # SKIP reason"
    errors: list[str] = field(default_factory=list)  # "error" values of its YAML blocks


def parse_tap(text: str) -> list[Stream]:
    """Parse TAP 13 as runtime-tools prints it (tap-go): result lines and plans at column 0.

    A ``TAP version`` line starts a new stream.  YAML blocks and nested output are indented, so
    only unindented lines are results.  A description is what follows the number (a leading "- "
    removed); a directive is ``# SKIP``/``# TODO``.  tap-go prints skips as ``ok N # SKIP reason``:
    their description is the reason, so that they can be keyed like other checks.  The ``error``
    values of YAML blocks are kept: the hook programs report their verdict only that way.
    """
    streams: list[Stream] = []
    yaml: list[str] | None = None

    def current() -> Stream:
        if not streams:
            streams.append(Stream())
        return streams[-1]

    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if yaml is not None:
            if line.strip() == "...":
                current().errors.extend(_yaml_errors("\n".join(yaml)))
                yaml = None
            else:
                yaml.append(line)
            continue
        if line.strip() == "---" and line.startswith(" "):
            yaml = []
            continue
        if TAP_VERSION.match(line):
            streams.append(Stream())
            continue
        m = TAP_PLAN.match(line)
        if m:
            stream = current()
            stream.plan = int(m.group(1))
            d = TAP_DIRECTIVE.search(line)
            if stream.plan == 0 and d and d.group(1).upper() == "SKIP":
                stream.skip_all = d.group(2).strip()
            continue
        m = TAP_RESULT.match(line)
        if not m:
            continue
        ok = m.group(1) == "ok"
        number = int(m.group(2)) if m.group(2) else None
        rest = m.group(3)
        directive = reason = ""
        d = TAP_DIRECTIVE.search(rest)
        if d:
            directive, reason = d.group(1).upper(), d.group(2).strip()
            rest = rest[: d.start()]
        description = rest.strip()
        if description.startswith("- "):
            description = description[2:].strip()
        elif description == "-":
            description = ""
        if not description and directive:
            description = reason
        current().checks.append(Check(number, ok, description, directive, reason))
    if yaml is not None:  # unterminated block
        current().errors.extend(_yaml_errors("\n".join(yaml)))
    return streams


def _yaml_errors(block: str) -> list[str]:
    """The ``error`` value(s) of one YAML block (tap-go writes JSON, sometimes mangled by %)."""
    try:
        data = json.loads(block)
    except ValueError:
        out = []
        for m in YAML_ERROR.finditer(block):
            try:
                out.append(json.loads(f'"{m.group(1)}"'))
            except ValueError:
                out.append(m.group(1))
        return out
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return [data["error"]]
    return []


# ---- expectations -------------------------------------------------------------------------------

@dataclass
class Expectation:
    """One line of expected-failures.txt: ``program | check | reason``.

    ``check`` is the whole TAP description (``*`` matches any text), or ``#N`` for a test number,
    or ``#N description`` for both.  A program-level problem is ``<kind> detail``: ``<exit>`` alone
    matches every detail of that kind, ``<exit> *no hugetlb controller*`` only a matching one.
    Kinds: exit, timeout, no-tap, plan, leftover mounts|cgroups|state|processes (see Problem).
    The hook programs' YAML verdicts are checks named ``<error> first line of the error``.
    """

    program: str
    check: str
    reason: str
    lineno: int
    number: int | None = None
    pattern: re.Pattern[str] | None = None
    matched_fail: int = 0
    matched_pass: int = 0

    def matches(self, program: str, number: int | None, description: str) -> bool:
        if program != self.program:
            return False
        if self.number is not None and number != self.number:
            return False
        return self.pattern is None or bool(self.pattern.fullmatch(description))

    def label(self) -> str:
        return f"{self.program} | {self.check}"


class ExpectationError(ValueError):
    pass


def parse_expectations(text: str) -> list[Expectation]:
    out: list[Expectation] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")]
        if len(parts) != 3 or not all(parts):
            raise ExpectationError(f"line {lineno}: want 'program | check | reason', got {raw!r}")
        program, check, reason = parts
        exp = Expectation(program, check, reason, lineno)
        desc = check
        m = re.fullmatch(r"#(\d+)(?:\s+(.*))?", check)
        if m:
            exp.number = int(m.group(1))
            desc = m.group(2) or ""
        if re.fullmatch(r"<[\w -]+>", desc):  # a program-level problem of that kind, any detail
            exp.pattern = re.compile(re.escape(desc) + r"(?: .*)?", re.DOTALL)
        elif desc:
            exp.pattern = re.compile(".*".join(re.escape(part) for part in desc.split("*")), re.DOTALL)
        out.append(exp)
    return out


def find_expectation(exps: Sequence[Expectation], program: str, number: int | None,
                     description: str) -> Expectation | None:
    for exp in exps:
        if exp.matches(program, number, description):
            return exp
    return None


# ---- the results of one program ------------------------------------------------------------------

@dataclass
class Problem:
    """A program-level failure; its key in expected-failures.txt is ``<kind>``.

    Kinds: timeout, exit (non-zero status or a signal), no-tap (nothing to judge), plan (missing
    or wrong ``1..N``), and after the run "leftover mounts|cgroups|state|processes".
    """

    kind: str
    detail: str


@dataclass
class ProgramResult:
    name: str
    seconds: float
    returncode: int | None  # None: timed out
    checks: list[Check]
    problems: list[Problem]
    stderr: str = ""
    container_stderr: str = ""  # what the containers wrote to stderr (kept by the wrapper)

    def counts(self) -> tuple[int, int, int]:
        """(ok, skipped, not ok) among the checks; a skip is not counted as ok."""
        skipped = sum(1 for c in self.checks if c.skipped)
        ok = sum(1 for c in self.checks if c.ok) - skipped
        return ok, skipped, len(self.checks) - ok - skipped


def evaluate(name: str, returncode: int | None, stdout: str, stderr: str, seconds: float = 0.0,
             container_stderr: str = "") -> ProgramResult:
    """Turn one program's exit status and output into checks and program-level problems.

    ``container_stderr`` (what the containers wrote to stderr) goes into a no-tap problem's detail:
    it is the only trace of a container that died before printing anything.
    """
    result = ProgramResult(name, seconds, returncode, [], [], stderr, container_stderr)
    if returncode is None:
        result.problems.append(Problem("timeout", f"killed after {seconds:.0f}s"))
    if name in NEGATIVE_PROGRAMS:
        if returncode is not None:
            refused = returncode == 0 and CREATE_FAILED in stderr
            if refused:
                detail = ""
            elif returncode == 0:
                detail = f"the program stopped before create failed{_stderr_tail(stderr)}"
            else:
                ran = "the container ran" if stdout.strip() else "create succeeded"
                detail = f"{ran}, exit status {returncode}{_stderr_tail(stderr)}"
            result.checks.append(Check(1, refused, NEGATIVE_PROGRAMS[name], detail=detail))
        return result
    if returncode is not None and returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
        result.problems.append(Problem("exit", how + _stderr_tail(stderr)))
    streams = parse_tap(stdout)
    for stream in streams:
        result.checks.extend(stream.checks)
    if returncode == 0 and not streams:
        detail = "no TAP output" + _stderr_tail(stderr)
        if container_stderr.strip():
            detail += f"; container stderr: {_one_line(container_stderr)}"
        result.problems.append(Problem("no-tap", detail))
    elif returncode == 0:
        for i, stream in enumerate(streams, 1):
            where = f"TAP stream {i}: " if len(streams) > 1 else ""
            numbers = [c.number for c in stream.checks]
            bad = None
            if stream.plan is None:
                bad = f"no 1..N plan after {len(numbers)} results"
            elif stream.plan != len(numbers):
                bad = f"plan 1..{stream.plan} but {len(numbers)} results"
            elif numbers != list(range(1, len(numbers) + 1)):
                bad = "results are not numbered 1..N in order"
            if bad:
                result.problems.append(Problem("plan", where + bad))
    # The hook programs print no results, only a YAML diagnostic whose "error" is the verdict.
    for stream in streams:
        if not stream.checks:
            for err in stream.errors:
                first, _, rest = err.strip().partition("\n")
                result.checks.append(Check(None, False, f"<error> {first.strip()}", detail=rest.strip()))
    if returncode == 0 and streams and not result.checks and not result.problems:
        result.checks.append(Check(None, True, NO_ERROR))
    return result


def _stderr_tail(stderr: str, lines: int = 3) -> str:
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return (": " + " / ".join(line.strip() for line in tail)) if tail else ""


# ---- the runtime wrapper --------------------------------------------------------------------------

WRAPPER = """#!/bin/sh
# Written by integration/conformance/run.py: run the runtime under test with a private --root,
# record every command line and every created container's config and bundle, and at the first
# delete keep what the container wrote to its stderr (the bundle is removed soon after).
printf '%s\\n' "$*" >> {log}
id=
for a in "$@"; do id=$a; done
case "$1" in
create)
  bundle=. prev=
  for a in "$@"; do
    case "$prev" in --bundle|-b) bundle=$a ;; esac
    case "$a" in --bundle=*) bundle=${{a#--bundle=}} ;; esac
    prev=$a
  done
  cp "$bundle/config.json" {records}/"$id".json 2>/dev/null
  printf '%s' "$bundle" > {records}/"$id".bundle ;;
delete)
  if [ -f {records}/"$id".bundle ] && [ ! -e {records}/"$id".kept ]; then
    : > {records}/"$id".kept
    for f in "$(cat {records}/"$id".bundle)"/stderr-*; do
      [ -s "$f" ] && {{ printf '[%s] ' "$id"; cat "$f"; }} >> {stderr} 2>/dev/null
    done
  fi ;;
esac
exec {runtime} --root {root} "$@"
"""


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class Wrapper:
    """A temporary directory with the wrapper script, its records and the runtime's state root."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        self.dir = Path(tempfile.mkdtemp(prefix="conformance-", dir="/run" if os.access("/run", os.W_OK)
                                         else None))
        self.log = self.dir / "commands.log"
        self.stderr = self.dir / "container-stderr.log"
        self.records = self.dir / "records"
        self.root = self.dir / "root"
        self.records.mkdir()
        self.path = self.dir / "runtime"
        self.path.write_text(WRAPPER.format(log=_sh_quote(str(self.log)), stderr=_sh_quote(str(self.stderr)),
                                            records=_sh_quote(str(self.records)),
                                            runtime=_sh_quote(runtime), root=_sh_quote(str(self.root))))
        self.path.chmod(0o755)

    def take_records(self, keep: Path | None = None) -> tuple[list[str], set[str], str]:
        """Command lines, container ids and container stderr since the last call.

        The containers' configs move to ``keep`` (when given); everything else is forgotten.
        """
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        stderr = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        self.stderr.unlink(missing_ok=True)
        ids: set[str] = set()
        for rec in self.records.iterdir():
            if rec.suffix == ".json":
                ids.add(rec.stem)
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.move(rec, keep / rec.name)
                    continue
            rec.unlink()
        return lines, ids, stderr

    def state_dirs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))

    def force_delete(self, cid: str) -> None:
        subprocess.run([self.runtime, "--root", str(self.root), "delete", "--force", cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        shutil.rmtree(self.root / cid, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- leftovers ----------------------------------------------------------------------------------

def _unescape_mountinfo(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def bundle_mounts() -> list[str]:
    """Mount points under /tmp/ocitest* in our mount namespace, deepest first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape_mountinfo(line.split()[4])
            if point.startswith(BUNDLE_PREFIX):
                out.append(point)
    return sorted(out, key=lambda p: (-p.count("/"), p))


def bundle_dirs() -> set[str]:
    parent, prefix = os.path.split(BUNDLE_PREFIX)
    try:
        return {os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix)}
    except OSError:
        return set()


def cgroup_dirs() -> set[str]:
    out = set()
    if not CGROUP_ROOT.is_dir():
        return out
    for top in CGROUP_ROOT.iterdir():
        if not top.is_dir() or top.is_symlink():
            continue
        for dirpath, dirnames, _ in os.walk(top):
            out.update(os.path.join(dirpath, d) for d in dirnames)
    return out


def ours(path: str, ids: Iterable[str], *, parents: bool = False) -> bool:
    """Whether a cgroup path names one of the run's containers or the suite's cgroupsPath.

    With ``parents``, also the bare "testdir" that a relative cgroupsPath creates on the way (for
    new directories only: the name is too common to decide which processes to kill).
    """
    names = path.strip("/").split("/")
    if set(names) & ({SUITE_CGROUP_NAME} | set(ids)):
        return True
    return parents and names[-1] == SUITE_CGROUP_PARENT


def process_cgroups(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        return []


def run_processes(ids: Iterable[str]) -> dict[int, str]:
    """Processes in a cgroup of the run's containers, or running the suite's /runtimetest."""
    ids = set(ids)
    me = os.getpid()
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        if exe.endswith("/runtimetest") or any(ours(cg, ids) for cg in process_cgroups(pid)):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            out[pid] = cmd or exe
    return out


@dataclass
class Snapshot:
    cgroups: set[str]
    bundles: set[str]
    mounts: set[str]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(cgroup_dirs(), bundle_dirs(), set(bundle_mounts()))


def collect_leftovers(before: Snapshot, wrapper: Wrapper, ids: set[str], grace: float = 3.0) -> list[Problem]:
    """Find what the last program left behind, clean it up, and describe it (empty: nothing)."""
    deadline = time.monotonic() + grace
    while True:  # a just-killed container's processes, cgroups and mounts need a moment
        mounts = [m for m in bundle_mounts() if m not in before.mounts]
        cgroups = sorted(c for c in cgroup_dirs() - before.cgroups
                         if ours(c[len(str(CGROUP_ROOT)):], ids, parents=True))
        procs = run_processes(ids)
        states = wrapper.state_dirs()
        if not (mounts or cgroups or procs or states) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    found = []
    if states:
        found.append(Problem("leftover state", f"under the runtime's root: {', '.join(states)}"))
        for cid in states:
            wrapper.force_delete(cid)
    if procs:
        found.append(Problem("leftover processes",
                             "; ".join(f"{pid} {cmd[:60]}" for pid, cmd in sorted(procs.items()))))
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.3)
    if mounts:
        found.append(Problem("leftover mounts", ", ".join(mounts)))
        for point in mounts:
            subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)
    if cgroups:
        found.append(Problem("leftover cgroups", ", ".join(cgroups)))
        for path in sorted(cgroups, key=lambda p: -p.count("/")):
            for _ in range(10):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
    # Bundles the program did not remove (it stops early when a step fails): not a failure of
    # the runtime, but they must not pile up; never remove one that still has a mount inside.
    still_mounted = bundle_mounts()
    for d in sorted(bundle_dirs() - before.bundles):
        if not any(m == d or m.startswith(d + "/") for m in still_mounted):
            shutil.rmtree(d, ignore_errors=True)
    return found


# ---- running -----------------------------------------------------------------------------------

def run_program(tree: Path, program: Path, wrapper: Wrapper,
                timeout: float) -> tuple[int | None, str, str, float]:
    """Run one program from the tree's top: exit status (None: timed out), stdout, stderr, seconds."""
    env = dict(os.environ, RUNTIME=str(wrapper.path))
    env.pop("GOFLAGS", None)
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Files, not pipes: containers inherit the program's stdio and may outlive it.
        proc = subprocess.Popen([str(program)], cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return rc, stdout, stderr, seconds


@dataclass
class Verdict:
    """The judgement of one run against the expectations."""

    passed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (program, text)
    expected: list[tuple[str, str, Expectation]] = field(default_factory=list)


def judge(result: ProgramResult, exps: Sequence[Expectation], verdict: Verdict) -> list[str]:
    """Count one program's checks and problems into verdict; return its report lines."""
    lines = []
    for c in result.checks:
        if c.ok or not c.failed:
            if c.skipped or not c.ok:  # a skip, or a TODO failure (no failure in TAP)
                verdict.skipped += 1
            else:
                verdict.passed += 1
            exp = find_expectation(exps, result.name, c.number, c.description)
            if exp is not None and not c.skipped:
                exp.matched_pass += 1
            continue
        exp = find_expectation(exps, result.name, c.number, c.description)
        detail = f"\n           {_one_line(c.detail)}" if c.detail else ""
        if exp is None:
            verdict.failed.append((result.name, c.line()))
            lines.append(f"  FAIL   {c.line()}{detail}")
        else:
            exp.matched_fail += 1
            verdict.expected.append((result.name, c.line(), exp))
            lines.append(f"  xfail  {c.line()}  [{exp.reason}]")
    for p in result.problems:
        text = f"<{p.kind}> {p.detail}"
        exp = find_expectation(exps, result.name, None, text)
        if exp is None:
            verdict.failed.append((result.name, text))
            lines.append(f"  FAIL   {text}")
        else:
            exp.matched_fail += 1
            verdict.expected.append((result.name, text, exp))
            lines.append(f"  xfail  {text}  [{exp.reason}]")
    return lines


def _one_line(text: str, width: int = 300) -> str:
    text = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= width else text[: width - 3] + "..."


def summary_line(verdict: Verdict) -> str:
    return (f"conformance: {verdict.passed} passed, {len(verdict.failed)} failed, "
            f"{len(verdict.expected)} expected failures")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("programs", nargs="*", help="only these programs (names like 'default' or 'hooks')")
    ap.add_argument("--tree", type=Path, default=DEFAULT_TREE, help="the built runtime-tools tree")
    ap.add_argument("--runtime", default="/usr/local/bin/ociruntime",
                    help="the runtime under test (default: %(default)s)")
    ap.add_argument("--expected", type=Path, default=DEFAULT_EXPECTED, help="expected failures file")
    ap.add_argument("--no-expected", action="store_true", help="expect every check to pass")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per program (default %(default)s)")
    ap.add_argument("--out", type=Path, help="save each program's TAP, stderr, runtime commands, container "
                    "configs, and results.json, here")
    ap.add_argument("-v", "--verbose", action="store_true", help="per-program counts and expected failures")
    args = ap.parse_args(argv)

    tree = args.tree.resolve()
    programs = sorted(tree.glob("validation/*/*.t"))
    if args.programs:
        wanted = {p.removesuffix(".t") for p in args.programs}
        unknown = wanted - {p.name.removesuffix(".t") for p in programs}
        if unknown:
            print(f"conformance: no such program(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        programs = [p for p in programs if p.name.removesuffix(".t") in wanted]
    if not programs or not (tree / "runtimetest").is_file():
        print(f"conformance: {tree} has no runtimetest or validation/*/*.t: build it first "
              "(make conformance-build)", file=sys.stderr)
        return 2
    runtime = shutil.which(args.runtime)
    if runtime is None:
        print(f"conformance: runtime {args.runtime} not found", file=sys.stderr)
        return 2
    exps: list[Expectation] = []
    if not args.no_expected:
        try:
            exps = parse_expectations(args.expected.read_text())
        except (OSError, ExpectationError) as e:
            print(f"conformance: {args.expected}: {e}", file=sys.stderr)
            return 2
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)

    pre = bundle_mounts()
    if pre:
        print(f"conformance: warning: mounts under {BUNDLE_PREFIX}* exist before the run (not ours, "
              f"left alone): {', '.join(pre)}")
    print(f"conformance: {len(programs)} programs from {tree}, runtime {runtime}")
    wrapper = Wrapper(runtime)
    verdict = Verdict()
    records: list[dict[str, object]] = []
    started = time.monotonic()
    try:
        for program in programs:
            before = Snapshot.take()
            rc, stdout, stderr, seconds = run_program(tree, program, wrapper, args.timeout)
            name = program.name.removesuffix(".t")
            commands, ids, container_stderr = wrapper.take_records(
                args.out / f"{name}.configs" if args.out else None)
            result = evaluate(name, rc, stdout, stderr, seconds, container_stderr)
            result.problems.extend(collect_leftovers(before, wrapper, ids))
            lines = judge(result, exps, verdict)
            ok, skipped, nok = result.counts()
            if args.verbose or lines:
                print(f"{result.name}: {ok} ok, {skipped} skipped, {nok} not ok "
                      f"({result.seconds:.1f}s, {len(ids)} containers)")
                for line in lines:
                    print(line)
                if any(line.startswith("  FAIL") for line in lines):
                    if result.stderr.strip():
                        print(f"  stderr {_one_line(result.stderr)}")
                    shown = any(p.kind == "no-tap" for p in result.problems)  # already in the detail
                    if result.container_stderr.strip() and not shown:
                        print(f"  container stderr {_one_line(result.container_stderr)}")
                sys.stdout.flush()
            if args.out:
                (args.out / f"{result.name}.tap").write_text(stdout)
                (args.out / f"{result.name}.stderr").write_text(result.stderr)
                (args.out / f"{result.name}.commands").write_text("\n".join(commands) + "\n")
                (args.out / f"{result.name}.container-stderr").write_text(result.container_stderr)
            records.append({
                "program": result.name, "seconds": round(result.seconds, 2), "returncode": result.returncode,
                "checks": [{"number": c.number, "ok": c.ok, "description": c.description,
                            "directive": c.directive, "detail": c.detail} for c in result.checks],
                "problems": [{"kind": p.kind, "detail": p.detail} for p in result.problems],
            })
    finally:
        wrapper.remove()
    elapsed = time.monotonic() - started

    if args.out:
        (args.out / "results.json").write_text(json.dumps({"runtime": runtime, "seconds": round(elapsed, 1),
                                                           "programs": records}, indent=1) + "\n")
    now_passing = [e for e in exps if e.matched_pass and not e.matched_fail]
    unseen = [e for e in exps if not e.matched_pass and not e.matched_fail
              and (not args.programs or e.program in {r["program"] for r in records})]
    if now_passing:
        print(f"conformance: {len(now_passing)} listed as expected failures pass now (remove them from "
              f"{args.expected.name}):")
        for e in now_passing:
            print(f"  PASS   {e.label()}")
    if unseen:
        print(f"conformance: {len(unseen)} listed expected failures matched no check:")
        for e in unseen:
            print(f"  ?      {e.label()}")
    if verdict.failed:
        by_program: dict[str, int] = {}
        for prog, _ in verdict.failed:
            by_program[prog] = by_program.get(prog, 0) + 1
        print("conformance: unexpected failures by program: "
              + ", ".join(f"{p} {n}" for p, n in sorted(by_program.items())))
    print(f"conformance: {verdict.skipped} skipped, {len(records)} programs in {elapsed:.0f}s")
    print(summary_line(verdict))
    return 1 if verdict.failed else 0


if __name__ == "__main__":
    sys.exit(main())
