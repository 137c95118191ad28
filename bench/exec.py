"""`exec <id> /bin/true` into a running busybox container: ociruntime vs runc.

Each runtime runs its own `sleep` container from the same bundle (started untimed); the timed
part is one `exec <id> /bin/true`, which joins the container's namespaces and cgroups, runs
`/bin/true` there and returns its status.  One warm-up each, iterations interleaved with
alternating order.  Usage (as root): bench/exec.py [--runtime CMD] [--runc PATH] [-n N] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Context, Row, median_row, standalone


def bench_exec(ctx: Context) -> list[Row]:
    """(e) the median `exec <id> /bin/true` into a running container."""
    n = ctx.n(30, 5)
    bundle = ctx.bundle("sleep", "1000")
    cids = {rt.name: ctx.cid(rt, "exec") for rt in ctx.runtimes}
    started = []
    try:
        for rt in ctx.runtimes:
            rt.run("run", "--detach", "--bundle", str(bundle), cids[rt.name])
            started.append(rt)
        times: dict[str, list[float]] = {rt.name: [] for rt in ctx.runtimes}
        for rt in ctx.runtimes:  # warm-up
            rt.run("exec", cids[rt.name], "/bin/true")
        for i in range(n):
            for rt in ctx.order(i):
                times[rt.name].append(rt.run("exec", cids[rt.name], "/bin/true"))
    finally:
        for rt in started:
            rt.spawn("delete", "--force", cids[rt.name])
    return [median_row(f"exec /bin/true into a running container (median of {n})", times)]


if __name__ == "__main__":
    sys.exit(standalone(__doc__, [bench_exec]))
