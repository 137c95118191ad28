"""`state`, `start`, `kill` and `delete` each timed alone: ociruntime vs runc.

Per iteration and runtime: `create --pid-file` of a busybox `sleep 1000` container (untimed) and
a pidfd on its init, then the timed `state` (of the created container), `start`, `kill <id>
KILL`, an untimed wait on the pidfd until the init is gone, and the timed `delete`.  Timing
each command alone shows where a runtime's cost sits: every one pays the runtime's start-up
(interpreter or Go runtime) plus its own work.  Same bundle and commands for both runtimes,
one warm-up each, iterations interleaved with alternating order.  Usage (as root):
bench/commands.py [--runtime CMD] [--runc PATH] [-n N] [--quick]
"""

from __future__ import annotations

import sys
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

COMMANDS = ("state", "start", "kill", "delete")


def one(rt: Runtime, bundle: Path, cid: str, pid_file: Path) -> dict[str, float]:
    """One container through create (untimed), state, start, kill KILL, wait (untimed), delete."""
    t: dict[str, float] = {}
    with cleaned_up(rt, pid_file, cid):
        rt.run("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
        with pidfd_of(read_pid(pid_file)) as fd:
            t["state"] = rt.run("state", cid)
            t["start"] = rt.run("start", cid)
            t["kill"] = rt.run("kill", cid, "KILL")
            wait_exit(rt, cid, fd)
        t["delete"] = rt.run("delete", cid)
        return t


def bench_commands(ctx: Context) -> list[Row]:
    """(b) the medians of state, start, kill and delete, each timed alone."""
    n = ctx.n(20, 3)
    bundle = ctx.bundle("sleep", "1000")
    times = {c: {rt.name: [] for rt in ctx.runtimes} for c in COMMANDS}
    for rt in ctx.runtimes:  # warm-up
        one(rt, bundle, ctx.cid(rt, "cmd-warm"), ctx.tmp / f"{rt.name}.pid")
    for i in range(n):
        for rt in ctx.order(i):
            for c, secs in one(rt, bundle, ctx.cid(rt, f"cmd{i}"), ctx.tmp / f"{rt.name}.pid").items():
                times[c][rt.name].append(secs)
    what = {"state": "state (created container)", "start": "start", "kill": "kill KILL (running container)",
            "delete": "delete (stopped container)"}
    return [median_row(f"{what[c]} (median of {n})", times[c]) for c in COMMANDS]


if __name__ == "__main__":
    sys.exit(standalone(__doc__, [bench_commands]))
