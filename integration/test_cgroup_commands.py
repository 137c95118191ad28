"""pause, resume, update, ps, events and delete --force on real containers.

Limits are read back twice: from the host's cgroup files and from inside the container (a
watcher loop in the container runs the checker on request, so no exec is needed).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import new_id, runtime_cmd

pytestmark = pytest.mark.root

DEADLINE = 30.0
INSIDE_FILES = ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")
# Runs as the container's init: on /tmp/go it reports the cgroup files through the checker into
# /tmp/out (renamed into place, so the host never reads half a file); /tmp/stop ends it.
WATCHER = ("while [ ! -e /tmp/stop ]; do if [ -e /tmp/go ]; then rm /tmp/go; "
           f"checker read {' '.join(INSIDE_FILES)} > /tmp/out.tmp; mv /tmp/out.tmp /tmp/out; fi; "
           "sleep 0.02; done")


def writable(cfg: dict) -> None:
    cfg["root"]["readonly"] = False


def wait_for(cond, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def wait_status(rt, cid: str, want: str) -> None:
    wait_for(lambda: rt.state(cid)["status"] == want, f"status {want}")


def cgroup_paths(rt, cid: str) -> dict[str, str]:
    return json.loads((Path(rt.root) / cid / "state.json").read_text())["cgroup"]["paths"]


def host_read(rt, cid: str, controller: str, name: str) -> str:
    return Path(cgroup_paths(rt, cid)[controller], name).read_text().strip()


def proc_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError("no State line")


class Container:
    """A started container in a fresh bundle; ``close`` force-deletes it."""

    def __init__(self, rt, bundle, args: list[str], start: bool = True) -> None:
        self.rt = rt
        self.bundle = bundle(args, writable)
        self.id = new_id()
        rt("create", "--bundle", str(self.bundle), self.id, check=True)
        if start:
            rt("start", self.id, check=True)
        self.pid = rt.state(self.id)["pid"]

    def path(self, inside: str) -> Path:
        return self.bundle / "rootfs" / inside.lstrip("/")

    def ask_inside(self) -> dict[str, str]:
        out = self.path("/tmp/out")
        out.unlink(missing_ok=True)
        self.path("/tmp/go").write_text("")
        wait_for(out.exists, "the watcher's report")
        return {k: v.strip() for k, v in json.loads(out.read_text()).items()}

    def close(self) -> None:
        self.rt("delete", "--force", self.id)


@pytest.fixture
def containers(rt, bundle):
    made: list[Container] = []

    def make(args: list[str], start: bool = True) -> Container:
        c = Container(rt, bundle, args, start)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- pause / resume -----------------------------------------------------------------------------
def test_pause_resume_transitions_and_freezing(rt, containers) -> None:
    c = containers(["sleep", "1000"], start=False)
    assert "created" in error_line(rt("pause", c.id))
    assert "not paused" in error_line(rt("resume", c.id))
    rt("start", c.id, check=True)
    assert "not paused" in error_line(rt("resume", c.id))

    rt("pause", c.id, check=True)
    assert rt.state(c.id)["status"] == "paused"
    assert host_read(rt, c.id, "freezer", "freezer.state") == "FROZEN"
    # A frozen task sleeps uninterruptibly in the freezer ("D"), whatever it was doing.
    assert proc_state(c.pid) == "D"
    assert "already paused" in error_line(rt("pause", c.id))

    rt("resume", c.id, check=True)
    assert rt.state(c.id)["status"] == "running"
    assert host_read(rt, c.id, "freezer", "freezer.state") == "THAWED"
    assert proc_state(c.pid) != "D"

    rt("kill", c.id, "KILL", check=True)
    wait_status(rt, c.id, "stopped")
    assert "not running" in error_line(rt("pause", c.id))
    assert "not paused" in error_line(rt("resume", c.id))


def test_pause_unknown_container(rt) -> None:
    assert "does not exist" in error_line(rt("pause", new_id()))
    assert "does not exist" in error_line(rt("resume", new_id()))


def test_delete_force_while_paused(rt, containers) -> None:
    c = containers(["sleep", "1000"])
    rt("pause", c.id, check=True)
    assert "not stopped" in error_line(rt("delete", c.id))
    assert rt.state(c.id)["status"] == "paused"
    rt("delete", "--force", c.id, check=True)
    assert not (Path(rt.root) / c.id).exists()
    assert not Path(f"/proc/{c.pid}").exists() or proc_state(c.pid) in ("Z", "X")


# --- update -------------------------------------------------------------------------------------
def test_update_flags_seen_on_host_and_inside(rt, containers) -> None:
    c = containers(["sh", "-c", WATCHER])
    before = c.ask_inside()
    rt("update", "--memory", "64m", "--pids-limit", "20", "--cpu-quota", "50000", "--cpu-period",
       "100000", "--cpu-share", "512", c.id, check=True)
    assert host_read(rt, c.id, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert host_read(rt, c.id, "pids", "pids.max") == "20"
    assert host_read(rt, c.id, "cpu", "cpu.cfs_quota_us") == "50000"
    assert host_read(rt, c.id, "cpu", "cpu.cfs_period_us") == "100000"
    assert host_read(rt, c.id, "cpu", "cpu.shares") == "512"
    inside = c.ask_inside()
    assert inside != before
    assert inside == {INSIDE_FILES[0]: str(64 << 20), INSIDE_FILES[1]: "20", INSIDE_FILES[2]: "50000",
                      INSIDE_FILES[3]: "100000"}
    stored = Path(rt.root) / c.id / "resources.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text()) == {
        "memory": {"limit": 64 << 20}, "pids": {"limit": 20},
        "cpu": {"quota": 50000, "period": 100000, "shares": 512}}


def test_update_stdin_json_then_flags_merge(rt, containers) -> None:
    c = containers(["sh", "-c", WATCHER])
    doc = {"cpu": {"quota": 30000, "period": 100000}, "pids": {"limit": 7},
           "memory": {"limit": 48 << 20, "swap": 96 << 20}}
    rt("update", "--resources=-", c.id, input=json.dumps(doc).encode(), check=True)
    assert host_read(rt, c.id, "pids", "pids.max") == "7"
    assert host_read(rt, c.id, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    # A later period-only update keeps the quota; a memory-only update keeps the swap limit.
    rt("update", "--cpu-period", "200000", "--memory", "32m", c.id, check=True)
    assert host_read(rt, c.id, "cpu", "cpu.cfs_quota_us") == "30000"
    assert host_read(rt, c.id, "cpu", "cpu.cfs_period_us") == "200000"
    assert host_read(rt, c.id, "memory", "memory.limit_in_bytes") == str(32 << 20)
    assert host_read(rt, c.id, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    inside = c.ask_inside()
    assert inside[INSIDE_FILES[0]] == str(32 << 20) and inside[INSIDE_FILES[1]] == "7"
    assert json.loads((Path(rt.root) / c.id / "resources.json").read_text()) == {
        "cpu": {"quota": 30000, "period": 200000}, "pids": {"limit": 7},
        "memory": {"limit": 32 << 20, "swap": 96 << 20}}


def test_update_from_file_on_created_and_paused(rt, containers, tmp_path: Path) -> None:
    c = containers(["sleep", "1000"], start=False)
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 11}}))
    rt("update", "-r", str(f), c.id, check=True)
    assert host_read(rt, c.id, "pids", "pids.max") == "11"
    rt("start", c.id, check=True)
    rt("pause", c.id, check=True)
    rt("update", "--pids-limit", "12", c.id, check=True)
    assert host_read(rt, c.id, "pids", "pids.max") == "12"
    assert rt.state(c.id)["status"] == "paused"


@pytest.mark.parametrize(("args", "stdin", "match"), [
    (("--resources", "-"), {"memory": {"limit": 16 << 20}, "pids": {"limit": "x"}}, "pids.limit"),
    (("--resources", "-"), {"memory": {"limit": 16 << 20}, "cpu": {"shares": -1}}, "cpu.shares"),
    (("--resources", "-"), ["not", "an", "object"], "JSON object"),
    (("--memory", "16m", "--pids-limit", "lots"), None, "--pids-limit"),
    (("--memory", "12q"), None, "--memory"),
    (("--l3-cache-schema", "L3:0=f"), None, "Intel RDT"),
])
def test_update_bad_values_change_nothing(rt, containers, args, stdin, match: str) -> None:
    c = containers(["sleep", "1000"])
    limit = host_read(rt, c.id, "memory", "memory.limit_in_bytes")
    p = rt("update", *args, c.id, input=None if stdin is None else json.dumps(stdin).encode())
    assert match in error_line(p)
    assert host_read(rt, c.id, "memory", "memory.limit_in_bytes") == limit
    assert not (Path(rt.root) / c.id / "resources.json").exists()


def test_update_stopped_container_refused(rt, containers) -> None:
    c = containers(["true"])
    wait_status(rt, c.id, "stopped")
    assert "not running" in error_line(rt("update", "--memory", "64m", c.id))


# --- ps -----------------------------------------------------------------------------------------
def cgroup_pids(rt, cid: str) -> list[int]:
    return sorted(int(x) for x in host_read(rt, cid, "pids", "cgroup.procs").split())


def test_ps_json_and_table(rt, containers) -> None:
    c = containers(["sleep", "1000"], start=False)
    p = rt("ps", "--format", "json", c.id, check=True)
    assert json.loads(p.stdout) == [c.pid]
    rt("start", c.id, check=True)
    c2 = containers(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    wait_for(lambda: len(cgroup_pids(rt, c2.id)) == 3, "three processes")
    pids = json.loads(rt("ps", "-f", "json", c2.id, check=True).stdout)
    assert pids == cgroup_pids(rt, c2.id) and c2.pid in pids

    table = rt("ps", c2.id, check=True).stdout.decode().splitlines()
    assert table[0].split()[:2] == ["UID", "PID"]
    assert sorted(int(line.split()[1]) for line in table[1:]) == pids
    custom = rt("ps", c2.id, "-o", "pid,comm", check=True).stdout.decode().splitlines()
    assert custom[0].split() == ["PID", "COMMAND"]
    assert sorted(line.split()[1] for line in custom[1:]) == ["sh", "sleep", "sleep"]

    rt("pause", c2.id, check=True)
    assert json.loads(rt("ps", "--format=json", c2.id, check=True).stdout) == pids
    assert "invalid format" in error_line(rt("ps", "--format", "yaml", c2.id))


# --- events -------------------------------------------------------------------------------------
def test_events_stats_once(rt, containers) -> None:
    c = containers(["sleep", "1000"])
    rt("update", "--memory", "64m", "--pids-limit", "9", c.id, check=True)
    p = rt("events", "--stats", c.id, check=True)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert list(ev) == ["type", "id", "data"] and ev["type"] == "stats" and ev["id"] == c.id
    data = ev["data"]
    assert {"cpu", "memory", "pids", "blkio", "hugetlb"} <= set(data)
    assert data["memory"]["usage"]["limit"] == 64 << 20
    assert data["memory"]["usage"]["usage"] > 0
    assert data["memory"]["raw"]["total_rss"] >= 0
    assert data["pids"] == {"current": 1, "limit": 9}
    assert data["cpu"]["usage"]["total"] > 0
    assert len(data["cpu"]["usage"]["percpu"]) == os.cpu_count()


def read_event(proc: subprocess.Popen) -> dict:
    """The next JSON line of a running ``events`` (bounded wait, so a hang fails the test)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
    assert ready, "no event arrived"
    line = proc.stdout.readline()
    assert line, "events ended early"
    return json.loads(line)


def events_proc(rt, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*runtime_cmd(), "--root", str(rt.root), "events", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_events_stream_stops_when_container_exits(rt, containers) -> None:
    c = containers(["sh", "-c", "while [ ! -e /tmp/stop ]; do sleep 0.02; done"])
    proc = events_proc(rt, "--interval", "50ms", c.id)
    try:
        for _ in range(2):
            ev = read_event(proc)
            assert ev["type"] == "stats" and ev["id"] == c.id and ev["data"]["pids"]["current"] >= 1
        c.path("/tmp/stop").write_text("")
        rest, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert all(json.loads(line)["type"] == "stats" for line in rest.splitlines())
    assert rt.state(c.id)["status"] == "stopped"


def test_events_reports_oom(rt, containers) -> None:
    script = ("while [ ! -e /tmp/go ]; do sleep 0.02; done; tail /dev/zero; "
              "while [ ! -e /tmp/stop ]; do sleep 0.02; done")
    c = containers(["sh", "-c", script])
    rt("update", "--memory", "16m", "--memory-swap", "16m", c.id, check=True)
    proc = events_proc(rt, "--interval", "100ms", c.id)
    try:
        # The first stats event proves the stream is set up (OOM watch registered) before the
        # OOM is triggered; an OOM before that would be history, not an event.
        assert read_event(proc)["type"] == "stats"
        c.path("/tmp/go").write_text("")
        ev = read_event(proc)
        while ev["type"] == "stats":
            ev = read_event(proc)
        assert ev == {"type": "oom", "id": c.id}
        c.path("/tmp/stop").write_text("")
        rest, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [json.loads(line)["type"] for line in rest.splitlines()] == ["stats"] * len(rest.splitlines())
    assert "oom_kill 1" in host_read(rt, c.id, "memory", "memory.oom_control")


def test_events_errors(rt, containers) -> None:
    c = containers(["true"])
    wait_status(rt, c.id, "stopped")
    assert "not running" in error_line(rt("events", "--stats", c.id))
    assert "not running" in error_line(rt("events", c.id))
    assert "greater than 0" in error_line(rt("events", "--interval", "0s", c.id))
    assert "invalid duration" in error_line(rt("events", "--interval", "5", c.id))
    assert "does not exist" in error_line(rt("events", "--stats", new_id()))
