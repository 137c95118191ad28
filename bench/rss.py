"""Peak memory (RSS) of each runtime command and of a created container's init: ociruntime vs runc.

Commands (`create`, `state`, `start`, `exec <id> /bin/true`, `kill KILL`, `delete`, and a
foreground `run` of /bin/true): ``ru_maxrss`` of ``wait4(2)`` on the command, in MiB.  That is
the largest resident set of the command process and of every descendant it waited for itself:
its helper processes, and for `run` and `exec` the container process it waits for (busybox
`true`, far smaller).  It does not include the container init `create` leaves behind, which
outlives the command.  The command is forked by a tiny static helper (bench/rss_spawn.c,
compiled into the temporary directory with gcc): forked straight from this Python process it
would report at least this process's own peak RSS (Linux records the memory map's high-water
mark at execve), a floor above runc's real figure.

Created init: `VmHWM` (peak) and `VmRSS` (current) from /proc/<pid>/status, and `Pss` (shared
pages divided among their users: the fairest cost per container) from
/proc/<pid>/smaps_rollup, of the init pid `create --pid-file` wrote, read while the container
is created but not started: the process that sits in memory for the container's whole created
life, and for runc the `runc init` that becomes the container process at `start`.

Same bundles and commands for both; iterations interleaved with alternating order; medians.
RSS hardly varies between runs, so few iterations suffice.  Usage (as root):
bench/rss.py [--runtime CMD] [--runc PATH] [-n N] [--quick]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    TIMEOUT,
    BenchError,
    Context,
    Row,
    Runtime,
    cleaned_up,
    median_row,
    pidfd_of,
    read_pid,
    spawn,
    standalone,
    wait_exit,
)

HERE = Path(__file__).resolve().parent
COMMANDS = ("create", "state", "start", "exec", "kill", "delete", "run")
INIT_FIELDS = ("VmHWM", "VmRSS", "Pss")


def build_helper(tmp: Path) -> Path:
    """Compile bench/rss_spawn.c statically into ``tmp``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc is needed to build bench/rss_spawn.c (apt-get install gcc libc6-dev)")
    out = tmp / "rss_spawn"
    p = subprocess.run([gcc, "-static", "-O2", "-o", str(out), str(HERE / "rss_spawn.c")],
                       capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if p.returncode != 0:
        raise BenchError(f"building rss_spawn failed: {p.stderr.strip()}")
    return out


def peak_rss(helper: Path, argv: list[str], stderr: int) -> tuple[int, int]:
    """Run ``argv`` under the helper; returns (exit code, ru_maxrss KiB) of the command itself."""
    r, w = os.pipe()
    try:
        res = spawn([str(helper), str(w), *argv], stderr=stderr, pass_fds=(w,))
        os.close(w)
        w = -1
        line = os.read(r, 256).decode().split()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    if res.returncode != 0 or len(line) != 2:
        raise BenchError(f"rss_spawn {argv[0]} failed ({res.returncode})")
    return os.waitstatus_to_exitcode(int(line[0])), int(line[1])


def init_memory(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS (/proc/<pid>/status) and Pss (smaps_rollup) of ``pid``, in KiB."""
    found: dict[str, int] = {}
    for name in ("status", "smaps_rollup"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in INIT_FIELDS:
                found[key] = int(rest.split()[0])
    missing = set(INIT_FIELDS) - set(found)
    if missing:
        raise BenchError(f"/proc/{pid} lacks {sorted(missing)}")
    return found


def one(ctx: Context, rt: Runtime, helper: Path, tag: str) -> tuple[dict[str, int], dict[str, int]]:
    """One container's commands under the helper, and its created init's memory (KiB each)."""
    sleep, true = ctx.bundle("sleep", "1000"), ctx.bundle("/bin/true")
    cid, run_cid = ctx.cid(rt, f"rss{tag}"), ctx.cid(rt, f"rssrun{tag}")
    pid_file = ctx.tmp / f"{rt.name}.pid"
    rss: dict[str, int] = {}

    def measure(name: str, *args: str) -> None:
        code, rss[name] = peak_rss(helper, rt.argv(*args), rt.log_fd())
        if code != 0:
            raise BenchError(f"{rt.name} {' '.join(args)} exited {code}: {rt.log_tail()}")

    with cleaned_up(rt, pid_file, cid, run_cid):
        measure("create", "create", "--bundle", str(sleep), "--pid-file", str(pid_file), cid)
        pid = read_pid(pid_file)
        with pidfd_of(pid) as fd:
            init = init_memory(pid)
            measure("state", "state", cid)
            measure("start", "start", cid)
            measure("exec", "exec", cid, "/bin/true")
            measure("kill", "kill", cid, "KILL")
            wait_exit(rt, cid, fd)
        measure("delete", "delete", cid)
        measure("run", "run", "--bundle", str(true), run_cid)
        return rss, init


def bench_rss(ctx: Context) -> list[Row]:
    """(g) median peak RSS of each command and the created init's memory, in MiB."""
    n = ctx.n(5, 1)
    helper = build_helper(ctx.tmp)
    cmd_kib = {c: {rt.name: [] for rt in ctx.runtimes} for c in COMMANDS}
    init_kib = {f: {rt.name: [] for rt in ctx.runtimes} for f in INIT_FIELDS}
    for i in range(n):
        for rt in ctx.order(i):
            rss, init = one(ctx, rt, helper, str(i))
            for c, kib in rss.items():
                cmd_kib[c][rt.name].append(kib)
            for f, kib in init.items():
                init_kib[f][rt.name].append(kib)
    _, floor = peak_rss(helper, [str(helper)], subprocess.DEVNULL)  # the helper alone: exits 2 at once
    ctx.notes.append(f"peak RSS of commands: ru_maxrss of wait4 on the command, forked by a static helper "
                     f"(bench/rss_spawn.c, floor {floor} KiB): the max over the command and the "
                     "descendants it waited for (for run and exec: the container's /bin/true), "
                     "not the container init create leaves")
    label = {"create": "create", "state": "state", "start": "start", "exec": "exec /bin/true",
             "kill": "kill KILL", "delete": "delete", "run": "run /bin/true"}
    rows = [median_row(f"peak RSS: {label[c]} (median of {n})", cmd_kib[c], unit="MiB") for c in COMMANDS]
    what = {"VmHWM": "peak (VmHWM)", "VmRSS": "VmRSS", "Pss": "Pss"}
    rows += [median_row(f"created, not started init: {what[f]} (median of {n})", init_kib[f], unit="MiB")
             for f in INIT_FIELDS]
    return rows


if __name__ == "__main__":
    sys.exit(standalone(__doc__, [bench_rss]))
