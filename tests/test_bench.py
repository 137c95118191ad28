"""The benchmark suite's own logic (bench/): report, iteration counts, spawning, waiting, RSS.

No root and no runtime needed; nothing here asserts on how long anything takes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402  (bench/ is a directory of scripts, not a package)
import rss  # noqa: E402


def _ctx(tmp_path: Path, **opts: object) -> common.Context:
    a = argparse.Namespace(runtime="ociruntime", runc="runc", n=0, quick=False)
    for k, v in opts.items():
        setattr(a, k, v)
    return common.Context(a, tmp_path, common.runtimes_for(a, tmp_path))


def test_table_medians_and_ratio() -> None:
    row = common.median_row("x", {"ociruntime": [0.3, 0.1, 0.2], "runc": [0.05, 0.1, 0.15]})
    assert row.cells() == ["x", "200.0 ms", "100.0 ms", "2.00"]
    mib = common.median_row("m", {"ociruntime": [2048], "runc": [1024]}, unit="MiB")
    assert mib.cells() == ["m", "2.0 MiB", "1.0 MiB", "2.00"]
    count = common.Row("failed", 0, 0, "", ratio=False)
    assert count.cells() == ["failed", "0", "0", "-"]
    missing = common.median_row("y", {"ociruntime": [1.0], "runc": []}, unit="s")
    assert missing.cells() == ["y", "1.00 s", "n/a", "-"]
    text = common.table([row, count])
    assert text.splitlines()[0] == "| benchmark | ociruntime | runc | ratio |"
    assert text.splitlines()[2] == "| x | 200.0 ms | 100.0 ms | 2.00 |"


def test_iterations_and_order(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    try:
        assert (ctx.n(20, 3), [rt.name for rt in ctx.order(0)], [rt.name for rt in ctx.order(1)]) == (
            20, ["ociruntime", "runc"], ["runc", "ociruntime"])
        ctx.args.quick = True
        assert ctx.n(20, 3) == 3
        ctx.args.n = 7
        assert ctx.n(20, 3) == 7
        roots = [rt.root for rt in ctx.runtimes]
        assert roots == [str(tmp_path / "root-ociruntime"), str(tmp_path / "root-runc")]
        assert ctx.cid(ctx.runtimes[0], "a") != ctx.cid(ctx.runtimes[1], "a")
    finally:
        for rt in ctx.runtimes:
            rt.close()


def test_spawn_status_and_stderr(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with open(log, "w") as f:
        r = common.spawn(["sh", "-c", "echo oops >&2; exit 3"], stderr=f.fileno())
    assert r.returncode == 3 and r.seconds > 0
    assert log.read_text() == "oops\n"
    assert common.spawn(["sh", "-c", "kill -TERM $$"]).returncode == -15


def test_spawn_kills_after_timeout() -> None:
    assert common.spawn(["sleep", "60"], timeout=0.2).returncode == -9


def test_wait_pidfd_for_a_process_we_did_not_wait_for() -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        with common.pidfd_of(p.pid) as fd:
            assert not common.wait_pidfd(fd, 0.1)
            p.kill()
            assert common.wait_pidfd(fd, 30)
    finally:
        p.kill()
        p.wait()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_rss_spawn_reports_the_command_not_us(tmp_path: Path) -> None:
    helper = rss.build_helper(tmp_path)
    ballast = b"x" * (64 << 20)  # our own RSS is now above 64 MiB; the helper's children must not see it
    code, small = rss.peak_rss(helper, ["/bin/true"], subprocess.DEVNULL)
    assert code == 0 and small < 16 << 10
    code, big = rss.peak_rss(helper, [sys.executable, "-c", "b = b'x' * (48 << 20)"], subprocess.DEVNULL)
    assert code == 0 and big > 48 << 10
    code, _ = rss.peak_rss(helper, ["sh", "-c", "exit 5"], subprocess.DEVNULL)
    assert code == 5
    assert len(ballast) == 64 << 20


def test_init_memory_reads_proc() -> None:
    mem = rss.init_memory(os.getpid())
    assert set(mem) == {"VmHWM", "VmRSS", "Pss"} and mem["VmHWM"] >= mem["VmRSS"] > 0


def test_only_keeps_the_suite_order(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_all", BENCH / "all.py")
    assert spec and spec.loader
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    monkeypatch.setattr(sys, "argv", ["all.py", "--only", "rss, lifecycle", "--quick"])
    a = driver.parse_args()
    assert (a.names, a.quick, a.n) == (["lifecycle", "rss"], True, 0)
    monkeypatch.setattr(sys, "argv", ["all.py", "--only", "lifecycle,nope"])
    with pytest.raises(SystemExit):
        driver.parse_args()
