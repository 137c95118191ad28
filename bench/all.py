"""Run the whole benchmark suite, ociruntime vs runc side by side, and print one summary table.

Benchmarks (names for --only), each in its own module with the details of what it measures:

  lifecycle  (a) create+start+delete of busybox /bin/true, init exit awaited on a pidfd  lifecycle.py
  commands   (b) state, start, kill KILL, delete, each timed alone                       commands.py
  run        (c) foreground `run` of /bin/true                                           lifecycle.py
  churn      (d) 100 containers through create/start/wait/delete, 8 at a time; failures churn.py
  exec       (e) `exec <id> /bin/true` into a running container                          exec.py
  podman     (f) `podman run --rm --network none IMAGE true`, podman on each runtime     podman.py
  rss        (g) peak RSS of each command, memory of a created init                      rss.py

Every benchmark runs both runtimes in the same run, interleaved with alternating order, from the
same bundle, each runtime with a private --root in one temporary directory (bench/common.py);
times are medians, the ratio is ociruntime/runc (lower is better for ociruntime).  The output is
markdown: what the machine was, the table, then notes.  A failing benchmark is reported and the
others still run; the exit status is then 1.  Usage (as root):
bench/all.py [--runtime CMD] [--runc PATH] [-n N] [--only NAME[,NAME]] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from churn import bench_churn
from commands import bench_commands
from common import BenchError, Context, Row, add_common_args, machine, session, table
from exec import bench_exec
from lifecycle import bench_lifecycle, bench_run
from podman import bench_podman
from rss import bench_rss

BENCHMARKS: dict[str, Callable[[Context], list[Row]]] = {
    "lifecycle": bench_lifecycle,
    "commands": bench_commands,
    "run": bench_run,
    "churn": bench_churn,
    "exec": bench_exec,
    "podman": bench_podman,
    "rss": bench_rss,
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these: {', '.join(BENCHMARKS)}")
    a = ap.parse_args()
    names = [s.strip() for s in a.only.split(",") if s.strip()] if a.only else list(BENCHMARKS)
    unknown = [s for s in names if s not in BENCHMARKS]
    if unknown or not names:
        ap.error(f"--only: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(BENCHMARKS)}")
    a.names = [s for s in BENCHMARKS if s in names]  # the suite's order, whatever the option's
    return a


def main() -> int:
    a = parse_args()
    about = machine(a)
    rows: list[Row] = []
    failed: list[str] = []
    t_start = time.monotonic()
    if os.geteuid() != 0:
        print("bench: the benchmarks need root", file=sys.stderr)
        return 2
    with session(a) as ctx:
        for name in a.names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                rows += BENCHMARKS[name](ctx)
            except (BenchError, OSError, ValueError, subprocess.SubprocessError) as exc:
                failed.append(name)
                rows.append(Row(f"{name}: FAILED (see notes)", None, None, "", ratio=False))
                ctx.notes.append(f"{name} failed: {exc}")
            finally:
                ctx.cleanup()  # whatever a failure left behind, before the next benchmark
            print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        notes = ctx.notes
    mode = " --quick" if a.quick else ""
    print(f"## ociruntime vs runc (bench/all.py{mode}, {time.monotonic() - t_start:.0f} s)\n")
    print("\n".join(f"- {line}" for line in about))
    print()
    print(table(rows))
    if notes:
        print()
        print("\n".join(f"- {note}" for note in notes))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
