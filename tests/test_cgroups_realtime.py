"""v1 realtime CPU bandwidth: cpu.rt_period_us / cpu.rt_runtime_us in whichever order the kernel takes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ociruntime.cgroups import files, v1
from ociruntime.errors import ConfigError


class FakeKernel:
    """Control files that refuse a period shorter than the runtime in force, like the kernel
    (sched_rt_global_validate / tg_set_rt_bandwidth: runtime must fit in the period)."""

    def __init__(self, period: int, runtime: int, refuse: int = errno.EINVAL) -> None:
        self.values = {"cpu.rt_period_us": period, "cpu.rt_runtime_us": runtime}
        self.refuse = refuse
        self.log: list[tuple[str, str, str]] = []

    def write(self, d: str, name: str, value: str) -> None:
        new = {**self.values, name: int(value)}
        ok = new["cpu.rt_runtime_us"] <= new["cpu.rt_period_us"]
        self.log.append((name, value, "ok" if ok else "refused"))
        if not ok:
            raise files.InvalidValue(f'write {d}/{name}: "{value}": invalid argument', self.refuse)
        self.values = new


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel(period=1000000, runtime=950000)
    monkeypatch.setattr(files, "write", k.write)
    return k


def test_period_first_when_it_fits(tmp_path: Path, kernel: FakeKernel) -> None:
    v1.apply_cpu(str(tmp_path), {"realtimePeriod": 2000000, "realtimeRuntime": 1000000})
    assert kernel.log == [("cpu.rt_period_us", "2000000", "ok"), ("cpu.rt_runtime_us", "1000000", "ok")]


def test_shorter_period_retried_after_runtime(tmp_path: Path, kernel: FakeKernel) -> None:
    # 500000 < the runtime in force (950000): refused until the runtime has shrunk
    v1.apply_cpu(str(tmp_path), {"realtimePeriod": 500000, "realtimeRuntime": 400000})
    assert kernel.log == [
        ("cpu.rt_period_us", "500000", "refused"),
        ("cpu.rt_runtime_us", "400000", "ok"),
        ("cpu.rt_period_us", "500000", "ok"),
    ]
    assert kernel.values == {"cpu.rt_period_us": 500000, "cpu.rt_runtime_us": 400000}


def test_refused_period_alone_is_an_error(tmp_path: Path, kernel: FakeKernel) -> None:
    with pytest.raises(ConfigError, match=r"cpu\.rt_period_us"):
        v1.apply_cpu(str(tmp_path), {"realtimePeriod": 500000})
    assert kernel.log == [("cpu.rt_period_us", "500000", "refused")]


def test_other_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = FakeKernel(period=1000000, runtime=950000, refuse=errno.ERANGE)
    monkeypatch.setattr(files, "write", k.write)
    with pytest.raises(ConfigError):
        v1.apply_cpu(str(tmp_path), {"realtimePeriod": 500000, "realtimeRuntime": 400000})
    assert k.log == [("cpu.rt_period_us", "500000", "refused")]


def test_real_write_failure_carries_errno(tmp_path: Path) -> None:
    with pytest.raises(files.InvalidValue) as exc:
        files.write(str(tmp_path), "cpu.rt_period_us", "1")  # missing control file
    assert exc.value.errno == errno.ENOENT
