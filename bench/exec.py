"""Median time of `exec <id> /bin/true` into a running busybox container: ociruntime vs runc.

Each runtime runs its own `sleep` container from the same bundle; the execs are interleaved in
one run, so the ratio is robust to machine noise.  Usage (as root):
bench/exec.py [--runtime CMD] [--runc PATH] [-n N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifecycle import build_bundle, parse_args, report, runtimes_for  # the sibling benchmark's helpers

QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def one_exec(cmd: list[str], root: str, cid: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--root", root, "exec", cid, "/bin/true"], check=True, **QUIET)
    return time.perf_counter() - t0


def main() -> int:
    a = parse_args(__doc__, 30)
    cid = f"bench-exec-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="ociruntime-bench-") as tmp:
        bundle = build_bundle(Path(tmp) / "bundle")
        cfg_path = bundle / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["args"] = ["sleep", "1000"]
        cfg_path.write_text(json.dumps(cfg))
        runtimes = runtimes_for(a, tmp)
        started = []
        try:
            for cmd, root in runtimes.values():
                subprocess.run([*cmd, "--root", root, "run", "-d", "--bundle", str(bundle), cid],
                               check=True, **QUIET)
                started.append((cmd, root))
            times: dict[str, list[float]] = {name: [] for name in runtimes}
            for cmd, root in runtimes.values():  # warm-up
                one_exec(cmd, root, cid)
            for _ in range(a.n):
                for name, (cmd, root) in runtimes.items():
                    times[name].append(one_exec(cmd, root, cid))
        finally:
            for cmd, root in started:
                subprocess.run([*cmd, "--root", root, "delete", "--force", cid], **QUIET)
    report("exec /bin/true into a running busybox container", a.n, times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
