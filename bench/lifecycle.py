"""create+start+delete, and `run`, of a busybox `/bin/true` container: ociruntime vs runc.

lifecycle (a): one timed cycle is `create --pid-file P`, opening a pidfd on the init pid read
from P, `start`, waiting on that pidfd until the init has exited, `delete`.  The pidfd wait
replaces polling `state` in a sleep loop: it returns the moment the kernel marks the init
exited, costs neither runtime an extra command, and needs no parenthood (the init is the
runtime's, reparented to pid 1).  Both runtimes count a zombie init as stopped, so `delete`
right after the wait is valid for both.

run (c): one timed `run --bundle B ID` in the foreground; it creates, starts, waits for and
deletes the container itself.

Same bundle, same commands, private roots, one warm-up each, iterations interleaved with
alternating order (bench/common.py).  Usage (as root):
bench/lifecycle.py [--runtime CMD] [--runc PATH] [-n N] [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Context,
    Row,
    Runtime,
    cleaned_up,
    median_row,
    pidfd_of,
    read_pid,
    standalone,
    wait_exit,
)


def cycle(rt: Runtime, bundle: Path, cid: str, pid_file: Path) -> float:
    """create + start + wait for the init's exit (pidfd) + delete; returns wall seconds.

    On failure the container is force-deleted (untimed) and BenchError raised.
    """
    t0 = time.perf_counter()
    with cleaned_up(rt, pid_file, cid):
        rt.run("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
        with pidfd_of(read_pid(pid_file)) as fd:
            rt.run("start", cid)
            wait_exit(rt, cid, fd)
        rt.run("delete", cid)
        return time.perf_counter() - t0


def bench_lifecycle(ctx: Context) -> list[Row]:
    """(a) the median create+start+delete cycle of busybox /bin/true."""
    n = ctx.n(20, 3)
    bundle = ctx.bundle("/bin/true")
    times: dict[str, list[float]] = {rt.name: [] for rt in ctx.runtimes}
    for rt in ctx.runtimes:  # warm-up: page cache, the first cgroup migration, ...
        cycle(rt, bundle, ctx.cid(rt, "lc-warm"), ctx.tmp / f"{rt.name}.pid")
    for i in range(n):
        for rt in ctx.order(i):
            times[rt.name].append(cycle(rt, bundle, ctx.cid(rt, f"lc{i}"), ctx.tmp / f"{rt.name}.pid"))
    return [median_row(f"create+start+delete /bin/true (median of {n})", times)]


def bench_run(ctx: Context) -> list[Row]:
    """(c) the median foreground `run` of busybox /bin/true (create, start, wait, delete in one)."""
    n = ctx.n(20, 3)
    bundle = ctx.bundle("/bin/true")
    times: dict[str, list[float]] = {rt.name: [] for rt in ctx.runtimes}
    for rt in ctx.runtimes:
        rt.run("run", "--bundle", str(bundle), ctx.cid(rt, "run-warm"))
    for i in range(n):
        for rt in ctx.order(i):
            times[rt.name].append(rt.run("run", "--bundle", str(bundle), ctx.cid(rt, f"run{i}")))
    return [median_row(f"run /bin/true (median of {n})", times)]


if __name__ == "__main__":
    sys.exit(standalone(__doc__, [bench_lifecycle, bench_run]))
