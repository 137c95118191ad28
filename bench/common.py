"""What every benchmark here shares: runtimes, bundles, quiet timed commands, waiting, the report.

Fairness rules all benchmarks follow:

* ociruntime and runc run the same bundle (the busybox rootfs of bundles/build.py, read-only
  root) with the same command lines, each with its own private ``--root`` under one temporary
  directory, so neither sees the other's (or the machine's) containers.
* Their iterations are interleaved in one run, and the order within a pair alternates
  (:meth:`Context.order`), so machine noise and cache effects hit both alike; the figure to read
  is the ratio of the medians.
* A timed command is one ``subprocess.Popen`` and a blocking wait: stdin and stdout are
  /dev/null, stderr goes to a log file (never a pipe: a container init inherits it and would
  hold it open).  The wait is a poll on a pidfd of the child, then ``wait4``: precise, with a
  timeout, and without the sleep loop ``Popen.wait(timeout=...)`` uses.
* Containers left behind by a failure are removed (``delete --force``) in ``finally`` blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import platform
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120.0  # seconds any single runtime command may take before it counts as hung


class BenchError(Exception):
    """A benchmark could not run (a command failed, a tool is missing)."""


# ---- runtimes and commands ----------------------------------------------------------------------

@dataclass
class Result:
    """One finished command: exit code (negative: killed by that signal), wall seconds, rusage."""

    returncode: int
    seconds: float
    maxrss_kib: int


@dataclass
class Runtime:
    """One runtime under test: its command, its private state root, the log its stderr goes to."""

    name: str
    cmd: list[str]
    root: str
    log: Path
    _log_fd: int = field(default=-1, repr=False)

    def __post_init__(self) -> None:
        # Opened once, before any thread (churn) uses it; O_APPEND keeps concurrent lines whole.
        self._log_fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def argv(self, *args: str) -> list[str]:
        return [*self.cmd, "--root", self.root, *args]

    def log_fd(self) -> int:
        if self._log_fd < 0:
            raise BenchError(f"{self.name}: the log is closed")
        return self._log_fd

    def close(self) -> None:
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def spawn(self, *args: str, timeout: float = TIMEOUT) -> Result:
        """Run one runtime command quietly; see :func:`spawn`."""
        return spawn(self.argv(*args), stderr=self.log_fd(), timeout=timeout)

    def run(self, *args: str, timeout: float = TIMEOUT) -> float:
        """Run one runtime command, raise BenchError unless it exits 0; return its wall seconds."""
        r = self.spawn(*args, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"{self.name} {' '.join(args)} exited {r.returncode}: {self.log_tail()}")
        return r.seconds

    def cleanup(self) -> None:
        """``delete --force`` whatever containers are left in this runtime's root (never raises)."""
        if not os.path.isdir(self.root):
            return
        p = subprocess.run(self.argv("list", "-q"), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=TIMEOUT, check=False)
        for cid in p.stdout.split():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(self.argv("delete", "--force", cid), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=self.log_fd(), timeout=TIMEOUT, check=False)


def spawn(argv: list[str], *, stdout: int = subprocess.DEVNULL, stderr: int = subprocess.DEVNULL,
          timeout: float = TIMEOUT, pass_fds: tuple[int, ...] = (),
          env: dict[str, str] | None = None) -> Result:
    """Run ``argv`` with stdin on /dev/null; wait for it on a pidfd, then reap it with ``wait4``.

    The wall time runs from just before the fork to just after the reap.  ``maxrss_kib`` is
    ``wait4``'s ``ru_maxrss``; from this (large) Python process it is at least this process's own
    peak RSS, see bench/rss_spawn.c; bench/rss.py measures memory through that helper instead.
    A child still running after ``timeout`` seconds is killed and reported as -SIGKILL.
    """
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
                         env=env)
    fd = os.pidfd_open(p.pid)
    try:
        if not wait_pidfd(fd, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status, ru = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Result(p.returncode, seconds, ru.ru_maxrss)


def wait_pidfd(fd: int, timeout: float) -> bool:
    """Block until the process behind pidfd ``fd`` has exited; False after ``timeout`` seconds.

    A pidfd becomes readable when its process exits (turns zombie), whoever its parent is: the
    benchmark can wait for a container init it did not fork, without polling ``state``.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if poller.poll(left * 1000):
            return True


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


@contextlib.contextmanager
def pidfd_of(pid: int) -> Iterator[int]:
    fd = os.pidfd_open(pid)
    try:
        yield fd
    finally:
        os.close(fd)


def wait_exit(rt: Runtime, cid: str, fd: int) -> None:
    """Wait on the init's pidfd ``fd`` until it exits; BenchError after TIMEOUT seconds."""
    if not wait_pidfd(fd, TIMEOUT):
        raise BenchError(f"{rt.name}: the init of {cid} did not exit within {TIMEOUT} s")


@contextlib.contextmanager
def cleaned_up(rt: Runtime, pid_file: Path, *cids: str) -> Iterator[None]:
    """On any failure inside, force-delete ``cids`` (untimed, best effort) and re-raise; the
    pid file goes in every case.  Every benchmark's container goes through this."""
    try:
        yield
    except BaseException:
        for cid in cids:
            with contextlib.suppress(Exception):
                rt.spawn("delete", "--force", cid)
        raise
    finally:
        pid_file.unlink(missing_ok=True)


# ---- the benchmark context -----------------------------------------------------------------------

def load_bundles_build() -> ModuleType:
    """bundles/build.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bundles_build", REPO / "bundles" / "build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_bundle(dest: Path, args: list[str] | None = None, rootfs_cache: Path | None = None) -> Path:
    """A busybox bundle at ``dest`` running ``args`` (default ``/bin/true``); returns ``dest``."""
    load_bundles_build().build_bundle(dest, args=args or ["/bin/true"], rootfs_cache=rootfs_cache)
    return dest


@dataclass
class Context:
    """One benchmark session: options, the temporary directory, both runtimes."""

    args: argparse.Namespace
    tmp: Path
    runtimes: list[Runtime]
    notes: list[str] = field(default_factory=list)  # printed under the summary table
    _bundles: dict[tuple[str, ...], Path] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return bool(getattr(self.args, "quick", False))

    def n(self, full: int, quick: int) -> int:
        """Iterations per runtime: ``-n`` if given, else this benchmark's default (or quick one)."""
        if self.args.n:
            return self.args.n
        return quick if self.quick else full

    def bundle(self, *args: str) -> Path:
        """A bundle running ``args``, built once per session and shared by both runtimes."""
        key = tuple(args) or ("/bin/true",)
        if key not in self._bundles:
            dest = self.tmp / "bundles" / f"b{len(self._bundles)}"
            build_bundle(dest, list(key), rootfs_cache=self.tmp / "rootfs-cache")
            self._bundles[key] = dest
        return self._bundles[key]

    def order(self, i: int) -> list[Runtime]:
        """Both runtimes, in alternating order on alternate iterations."""
        return self.runtimes if i % 2 == 0 else self.runtimes[::-1]

    def cid(self, rt: Runtime, tag: str) -> str:
        """A container id unique to this session and runtime (cgroup names derive from it)."""
        return f"bench-{os.getpid()}-{rt.name}-{tag}"

    def cleanup(self) -> None:
        for rt in self.runtimes:
            with contextlib.suppress(Exception):
                rt.cleanup()


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--runtime", default="/usr/local/bin/ociruntime",
                    help="ociruntime command, split like a shell would (default: %(default)s)")
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc",
                    help="runc binary (default: %(default)s)")
    ap.add_argument("-n", type=int, default=0,
                    help="iterations per runtime for every benchmark, rounds for churn "
                         "(default: each benchmark's own)")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run: few iterations, churn of 16")


def parse_args(doc: str | None, n: int = 0) -> argparse.Namespace:
    """The command line every single benchmark script takes: our runtime, runc, iterations.

    ``n`` is kept for callers that pass a default; each benchmark has its own default anyway.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    a = ap.parse_args()
    a.n = a.n or n
    return a


def runtimes_for(a: argparse.Namespace, tmp: str | Path) -> list[Runtime]:
    """ociruntime then runc, each with its own private ``--root`` and log under ``tmp``."""
    tmp = Path(tmp)
    return [Runtime("ociruntime", shlex.split(a.runtime), str(tmp / "root-ociruntime"),
                    tmp / "ociruntime.log"),
            Runtime("runc", [a.runc], str(tmp / "root-runc"), tmp / "runc.log")]


@contextlib.contextmanager
def session(a: argparse.Namespace) -> Iterator[Context]:
    """A Context over a fresh temporary directory; containers and the directory go afterwards."""
    if os.geteuid() != 0:
        raise BenchError("the benchmarks need root")
    tmp = Path(tempfile.mkdtemp(prefix="ociruntime-bench-"))
    ctx = Context(a, tmp, runtimes_for(a, tmp))
    try:
        yield ctx
    finally:
        ctx.cleanup()
        for rt in ctx.runtimes:
            rt.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- results and the report ----------------------------------------------------------------------

@dataclass
class Row:
    """One line of the summary: a benchmark and its figure for each runtime."""

    benchmark: str
    ours: float | None
    runc: float | None
    unit: str  # "ms", "s", "MiB", or "" for a count
    ratio: bool = True  # False for counts (failures), where a ratio means nothing

    def cells(self) -> list[str]:
        def fmt(v: float | None) -> str:
            if v is None:
                return "n/a"
            if not self.unit:
                return f"{v:g}"
            digits = 2 if self.unit == "s" else 1
            return f"{v:.{digits}f} {self.unit}"
        r = "-"
        if self.ratio and self.ours is not None and self.runc:
            r = f"{self.ours / self.runc:.2f}"
        return [self.benchmark, fmt(self.ours), fmt(self.runc), r]


def median_row(what: str, times: dict[str, list[float]], unit: str = "ms") -> Row:
    """The medians of per-runtime samples (seconds for "ms"/"s", KiB for "MiB") as one Row."""
    scale = {"ms": 1000.0, "s": 1.0, "MiB": 1 / 1024}[unit]

    def med(name: str) -> float | None:
        v = times.get(name)
        return statistics.median(v) * scale if v else None
    return Row(what, med("ociruntime"), med("runc"), unit)


def plural(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def table(rows: list[Row]) -> str:
    """The markdown summary table: benchmark | ociruntime | runc | ratio."""
    lines = ["| benchmark | ociruntime | runc | ratio |", "| --- | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def _first_line(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    return (p.stdout.strip().splitlines() or ["unavailable"])[0]


def machine(a: argparse.Namespace) -> list[str]:
    """What the numbers were measured on, for the README to quote alongside them."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"kernel: {platform.uname().release}, nproc: {len(os.sched_getaffinity(0))}, "
        f"load average at start: {load}",
        f"runc: {_first_line([a.runc, '--version'])} ({a.runc})",
        f"ociruntime: {_first_line([*shlex.split(a.runtime), '--version'])} ({a.runtime})",
        f"python: {platform.python_version()} (benchmark driver), {_runtime_python(a)} (ociruntime)",
    ]


def _runtime_python(a: argparse.Namespace) -> str:
    """The interpreter version of the ociruntime command (a launcher script's #! line, or argv[0])."""
    cmd = shlex.split(a.runtime)
    interp = cmd[:1]
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(cmd[0], "rb") as f:
            first = f.read(256).split(b"\n", 1)[0].decode()
        if first.startswith("#!"):
            interp = first[2:].split()[:1]
    return _first_line([*interp, "--version"])


def standalone(doc: str | None, benches: list[Callable[[Context], list[Row]]]) -> int:
    """main() of a single benchmark script: run ``benches`` and print their table."""
    a = parse_args(doc)
    try:
        with session(a) as ctx:
            rows = [row for bench in benches for row in bench(ctx)]
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    for note in ctx.notes:
        print(f"- {note}")
    return 0
