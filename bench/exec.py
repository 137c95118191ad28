"""Median time of `exec <id> /bin/true` into a running busybox container: ociruntime vs runc.

Each runtime runs its own `sleep` container from the same bundle; the execs are interleaved in
one run, so the ratio is robust to machine noise.  Usage (as root):
bench/exec.py [--runtime CMD] [--runc PATH] [-n N]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifecycle import build_bundle  # the sibling benchmark's bundle builder

QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def one_exec(cmd: list[str], root: str, cid: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--root", root, "exec", cid, "/bin/true"], check=True, **QUIET)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runtime", default="/usr/local/bin/ociruntime", help="ociruntime command")
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("-n", type=int, default=30, help="execs per runtime")
    a = ap.parse_args()
    ours = shlex.split(a.runtime)
    cid = f"bench-exec-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="ociruntime-bench-") as tmp:
        bundle = build_bundle(Path(tmp) / "bundle")
        cfg_path = bundle / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["args"] = ["sleep", "1000"]
        cfg_path.write_text(json.dumps(cfg))
        runtimes = {"ociruntime": (ours, f"{tmp}/root-ours"), "runc": ([a.runc], f"{tmp}/root-runc")}
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
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"exec /bin/true into a running busybox container, median of {a.n} (ms):")
    print(f"  ociruntime {med['ociruntime']:8.1f}")
    print(f"  runc       {med['runc']:8.1f}")
    print(f"  ratio ociruntime/runc: {med['ociruntime'] / med['runc']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
