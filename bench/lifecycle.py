"""Median create+start+delete time of a busybox `/bin/true` container: ociruntime vs runc.

Both runtimes run the same bundle, interleaved in one run, so the ratio is robust to machine
noise.  Usage (as root): bench/lifecycle.py [--runtime CMD] [--runc PATH] [-n N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_bundle(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("bundles_build", REPO / "bundles" / "build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build_bundle(dest, args=["/bin/true"])
    return dest


def one_cycle(cmd: list[str], root: str, bundle: Path, cid: str) -> float:
    """create + start + wait for exit + delete; returns seconds."""
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--root", root, "create", "--bundle", str(bundle), cid], check=True, **quiet)
    subprocess.run([*cmd, "--root", root, "start", cid], check=True, **quiet)
    # /bin/true exits at once; delete refuses a running container, so wait for "stopped"
    while b'"stopped"' not in subprocess.run([*cmd, "--root", root, "state", cid],
                                             capture_output=True).stdout:
        time.sleep(0.001)
    subprocess.run([*cmd, "--root", root, "delete", cid], check=True, **quiet)
    return time.perf_counter() - t0


def parse_args(doc: str | None, n: int) -> argparse.Namespace:
    """The command line every benchmark here takes: our runtime, runc, iterations."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--runtime", default="/usr/local/bin/ociruntime", help="ociruntime command")
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("-n", type=int, default=n, help="iterations per runtime")
    return ap.parse_args()


def runtimes_for(a: argparse.Namespace, tmp: str) -> dict[str, tuple[list[str], str]]:
    """name -> (command, private --root) for both runtimes."""
    return {"ociruntime": (shlex.split(a.runtime), f"{tmp}/root-ours"),
            "runc": ([a.runc], f"{tmp}/root-runc")}


def main() -> int:
    a = parse_args(__doc__, 20)
    with tempfile.TemporaryDirectory(prefix="ociruntime-bench-") as tmp:
        bundle = build_bundle(Path(tmp) / "bundle")
        times: dict[str, list[float]] = {"ociruntime": [], "runc": []}
        runtimes = runtimes_for(a, tmp)
        for name, (cmd, root) in runtimes.items():  # warm-up (page cache, seccomp cache, ...)
            one_cycle(cmd, root, bundle, f"warm-{name}")
        for i in range(a.n):
            for name, (cmd, root) in runtimes.items():
                times[name].append(one_cycle(cmd, root, bundle, f"b{i}-{os.getpid()}"))
    report("create+start+delete of busybox /bin/true", a.n, times)
    return 0


def report(what: str, n: int, times: dict[str, list[float]]) -> None:
    """Medians side by side and their ratio, the figure the README quotes."""
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"{what}, median of {n} (ms):")
    print(f"  ociruntime {med['ociruntime']:8.1f}")
    print(f"  runc       {med['runc']:8.1f}")
    print(f"  ratio ociruntime/runc: {med['ociruntime'] / med['runc']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
