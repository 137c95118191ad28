"""Churn: many containers through create/start/wait/delete, several at a time: ociruntime vs runc.

One round pushes COUNT busybox `/bin/true` containers through the cycle of bench/lifecycle.py
(create, pidfd on the init, start, wait for its exit, delete) on a pool of WORKERS threads, each
running one cycle at a time with subprocess; the figure is the round's total wall time.  This
is what a busy node does to a runtime: concurrent commands contend for the CPUs, the state
directory's locks and the cgroup hierarchies.  Any command exiting non-zero (or an init that
does not exit) makes that container a failure; failures are counted, never retried, and the
container is force-deleted.  Rounds alternate between the runtimes (ours, runc, runc, ours,
...); the median round is reported.  Usage (as root):
bench/churn.py [--runtime CMD] [--runc PATH] [-n ROUNDS] [--quick]
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BenchError, Context, Row, Runtime, median_row, plural, standalone
from lifecycle import cycle

COUNT = 100
QUICK_COUNT = 16
WORKERS = 8


def churn_round(ctx: Context, rt: Runtime, bundle: Path, tag: str, count: int,
                errors: list[str]) -> tuple[float, int]:
    """Run ``count`` cycles on WORKERS threads; returns (wall seconds, failed containers)."""
    pids = ctx.tmp / "churn-pids"
    pids.mkdir(exist_ok=True)
    lock = threading.Lock()

    def job(i: int) -> int:
        cid = ctx.cid(rt, f"{tag}-{i}")
        try:
            cycle(rt, bundle, cid, pids / f"{cid}.pid")
        except (BenchError, OSError, ValueError) as exc:
            with lock:
                errors.append(f"{rt.name} {cid}: {exc}")
            return 1
        return 0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        failures = sum(pool.map(job, range(count)))
    return time.perf_counter() - t0, failures


def bench_churn(ctx: Context) -> list[Row]:
    """(d) total wall time of COUNT containers, WORKERS at a time; plus the failure count."""
    rounds = ctx.n(3, 1)
    count = QUICK_COUNT if ctx.quick else COUNT
    bundle = ctx.bundle("/bin/true")
    walls: dict[str, list[float]] = {rt.name: [] for rt in ctx.runtimes}
    failed = {rt.name: 0 for rt in ctx.runtimes}
    errors: list[str] = []
    for rt in ctx.runtimes:  # warm-up
        cycle(rt, bundle, ctx.cid(rt, "ch-warm"), ctx.tmp / f"{rt.name}.pid")
    for r in range(rounds):
        for rt in ctx.order(r):
            wall, n_failed = churn_round(ctx, rt, bundle, f"ch{r}", count, errors)
            walls[rt.name].append(wall)
            failed[rt.name] += n_failed
    ctx.notes += [f"churn failure: {e}" for e in errors[:10]]
    label = f"churn: {count} containers, {WORKERS} at a time"
    return [median_row(f"{label}, wall time (median of {plural(rounds, 'round')})", walls, unit="s"),
            Row(f"{label}, failed containers (of {rounds * count} per runtime)",
                failed["ociruntime"], failed["runc"], "", ratio=False)]


if __name__ == "__main__":
    sys.exit(standalone(__doc__, [bench_churn]))
