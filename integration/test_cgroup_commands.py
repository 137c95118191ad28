"""pause, resume, update, ps, events and delete --force on real containers.

Limits are read back twice: from the host's cgroup files and from inside the container (a
watcher loop in the container runs the checker on request, so no exec is needed).

The same tests run on this machine's v1 controllers (pure v1 or hybrid) and, through
``make test-cgroupv2``, on pure cgroup v2: each check names the files of the layout the
container's cgroup is on (state.json records it; it must agree with ``detect_layout()``) and
the exact values the runtime must have written there.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import new_id, runtime_cmd

from ociruntime.cgroups import detect_layout
from ociruntime.cgroups.base import UNIFIED

pytestmark = pytest.mark.root

DEADLINE = 30.0
CGROUP = "/sys/fs/cgroup"
# "v1" and "hybrid" put every limit into the v1 controllers; "v2" into the one cgroup2 directory.
LAYOUT = detect_layout().under(CGROUP).mode
V2 = LAYOUT == "v2"


def per_layout(v1, v2):
    """The expectation for this host: the v1 controllers' (pure v1, hybrid) or cgroup v2's."""
    return v2 if V2 else v1


def cpu_weight(shares: int) -> str:
    """cpu.shares as cgroup v2's cpu.weight (runc's ConvertCPUSharesToCgroupV2Value)."""
    return str(1 + ((shares - 2) * 9999) // 262142)


# What the container sees in its own /sys/fs/cgroup: one directory per v1 controller, or its
# cgroup2 directory itself (the mount's root is the container's cgroup).
INSIDE_FILES: dict[str, str] = per_layout(
    {"memory": f"{CGROUP}/memory/memory.limit_in_bytes", "pids": f"{CGROUP}/pids/pids.max",
     "quota": f"{CGROUP}/cpu/cpu.cfs_quota_us", "period": f"{CGROUP}/cpu/cpu.cfs_period_us"},
    {"memory": f"{CGROUP}/memory.max", "pids": f"{CGROUP}/pids.max", "cpu": f"{CGROUP}/cpu.max"},
)
MEMORY_LIMIT = per_layout("memory.limit_in_bytes", "memory.max")
# Runs as the container's init: on /tmp/go it reports the cgroup files through the checker into
# /tmp/out (renamed into place, so the host never reads half a file); /tmp/stop ends it.
WATCHER = ("while [ ! -e /tmp/stop ]; do if [ -e /tmp/go ]; then rm /tmp/go; "
           f"checker read {' '.join(INSIDE_FILES.values())} > /tmp/out.tmp; mv /tmp/out.tmp /tmp/out; fi; "
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


def cgroup_state(rt, cid: str) -> dict:
    return json.loads((Path(rt.root) / cid / "state.json").read_text())["cgroup"]


def cgroup_dir(rt, cid: str, controller: str) -> Path:
    """The container's directory for ``controller``: its own on v1, the unified one on v2."""
    state = cgroup_state(rt, cid)
    assert state["mode"] == LAYOUT, (state["mode"], LAYOUT)
    return Path(state["paths"][UNIFIED if state["mode"] == "v2" else controller])


def host_read(rt, cid: str, name: str, controller: str | None = None) -> str:
    """A control file of the container's cgroup; the v1 controller defaults to the name's prefix."""
    return (cgroup_dir(rt, cid, controller or name.split(".")[0]) / name).read_text().strip()


def host_files(rt, cid: str, names) -> dict[str, str]:
    return {name: host_read(rt, cid, name) for name in names}


def keyed(text: str) -> dict[str, int]:
    """A flat-keyed cgroup file (memory.events, cpu.stat, memory.oom_control)."""
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def proc_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError("no State line")


def freezer_report(rt, cid: str) -> tuple[str, ...]:
    """What the kernel says: freezer.state on v1; cgroup.freeze and cgroup.events' frozen on v2."""
    if V2:
        return host_read(rt, cid, "cgroup.freeze"), str(keyed(host_read(rt, cid, "cgroup.events"))["frozen"])
    return (host_read(rt, cid, "freezer.state"),)


FROZEN = per_layout(("FROZEN",), ("1", "1"))
THAWED = per_layout(("THAWED",), ("0", "0"))


# Where the v2 freezer parks a task: do_freezer_trap (kernel/signal.c), called on the way to
# user space from get_signal, into which the compiler may inline it (Debian's 6.1 shows get_signal).
V2_FREEZER_WCHAN = ("do_freezer_trap", "get_signal")


def task_frozen(pid: int) -> bool:
    """Whether the task itself is held by the freezer, whatever it was doing (here: sleep(1)).

    The v1 freezer puts it into an uninterruptible sleep ("D"); the v2 freezer into an
    interruptible one ("S") at signal delivery, which only its wait channel tells apart from the
    nanosleep it was in.
    """
    if V2:
        return Path(f"/proc/{pid}/wchan").read_text() in V2_FREEZER_WCHAN
    return proc_state(pid) == "D"


class Container:
    """A started container in a fresh bundle; ``close`` force-deletes it."""

    def __init__(self, rt, bundle, args: list[str], start: bool = True,
                 resources: dict | None = None) -> None:
        def mutate(cfg: dict) -> None:
            writable(cfg)
            cfg["linux"]["resources"].update(resources or {})

        self.rt = rt
        self.bundle = bundle(args, mutate)
        self.id = new_id()
        rt("create", "--bundle", str(self.bundle), self.id, check=True)
        if start:
            rt("start", self.id, check=True)
        self.pid = rt.state(self.id)["pid"]

    def path(self, inside: str) -> Path:
        return self.bundle / "rootfs" / inside.lstrip("/")

    def ask_inside(self) -> dict[str, str]:
        """INSIDE_FILES as read by the watcher, by key; a file it could not read fails the test."""
        out = self.path("/tmp/out")
        out.unlink(missing_ok=True)
        self.path("/tmp/go").write_text("")
        wait_for(out.exists, "the watcher's report")
        report = json.loads(out.read_text())
        got = {}
        for key, path in INSIDE_FILES.items():
            value = report[path]
            assert isinstance(value, str), f"checker could not read {path} in the container: {value}"
            got[key] = value.strip()
        return got

    def close(self) -> None:
        self.rt("delete", "--force", self.id)


@pytest.fixture
def containers(rt, bundle):
    made: list[Container] = []

    def make(args: list[str], start: bool = True, resources: dict | None = None) -> Container:
        c = Container(rt, bundle, args, start, resources)
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

    assert freezer_report(rt, c.id) == THAWED
    rt("pause", c.id, check=True)
    assert rt.state(c.id)["status"] == "paused"
    assert freezer_report(rt, c.id) == FROZEN
    assert task_frozen(c.pid)
    assert "already paused" in error_line(rt("pause", c.id))

    rt("resume", c.id, check=True)
    assert rt.state(c.id)["status"] == "running"
    assert freezer_report(rt, c.id) == THAWED
    # The thawed task is woken, not run on the spot: give the scheduler a moment.
    wait_for(lambda: not task_frozen(c.pid), "the task to leave the freezer")

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
    want = per_layout(
        {"memory.limit_in_bytes": str(64 << 20), "pids.max": "20", "cpu.cfs_quota_us": "50000",
         "cpu.cfs_period_us": "100000", "cpu.shares": "512"},
        {"memory.max": str(64 << 20), "pids.max": "20", "cpu.max": "50000 100000",
         "cpu.weight": cpu_weight(512)},
    )
    assert host_files(rt, c.id, want) == want
    inside = c.ask_inside()
    assert inside != before
    assert inside == per_layout(
        {"memory": str(64 << 20), "pids": "20", "quota": "50000", "period": "100000"},
        {"memory": str(64 << 20), "pids": "20", "cpu": "50000 100000"},
    )
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
    # v1's memsw limit is memory+swap; v2's memory.swap.max is the swap alone (96m - 48m).
    want = per_layout(
        {"pids.max": "7", "memory.limit_in_bytes": str(48 << 20),
         "memory.memsw.limit_in_bytes": str(96 << 20),
         "cpu.cfs_quota_us": "30000", "cpu.cfs_period_us": "100000"},
        {"pids.max": "7", "memory.max": str(48 << 20), "memory.swap.max": str(48 << 20),
         "cpu.max": "30000 100000"},
    )
    assert host_files(rt, c.id, want) == want
    # A later period-only update keeps the quota; a memory-only update keeps the swap limit
    # (memory+swap stays 96m, so v2's swap alone grows to 64m).
    rt("update", "--cpu-period", "200000", "--memory", "32m", c.id, check=True)
    want = per_layout(
        {"pids.max": "7", "memory.limit_in_bytes": str(32 << 20),
         "memory.memsw.limit_in_bytes": str(96 << 20),
         "cpu.cfs_quota_us": "30000", "cpu.cfs_period_us": "200000"},
        {"pids.max": "7", "memory.max": str(32 << 20), "memory.swap.max": str(64 << 20),
         "cpu.max": "30000 200000"},
    )
    assert host_files(rt, c.id, want) == want
    inside = c.ask_inside()
    assert inside["memory"] == str(32 << 20) and inside["pids"] == "7"
    assert json.loads((Path(rt.root) / c.id / "resources.json").read_text()) == {
        "cpu": {"quota": 30000, "period": 200000}, "pids": {"limit": 7},
        "memory": {"limit": 32 << 20, "swap": 96 << 20}}


def test_update_one_cfs_value_keeps_the_other_set_at_create(rt, containers) -> None:
    # runc's update leaves the unset one of quota and period at its old value, also when only
    # create set it (no earlier update remembered it).  cgroup v2 keeps both in cpu.max.
    c = containers(["sleep", "1000"], resources={"cpu": {"quota": 50000, "period": 100000}})
    rt("update", "--cpu-period", "200000", c.id, check=True)
    want = per_layout({"cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "200000"},
                      {"cpu.max": "50000 200000"})
    assert host_files(rt, c.id, want) == want
    rt("update", "--cpu-quota", "-1", c.id, check=True)
    want = per_layout({"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "200000"}, {"cpu.max": "max 200000"})
    assert host_files(rt, c.id, want) == want


def test_update_from_file_on_created_and_paused(rt, containers, tmp_path: Path) -> None:
    c = containers(["sleep", "1000"], start=False)
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 11}}))
    rt("update", "-r", str(f), c.id, check=True)
    assert host_read(rt, c.id, "pids.max") == "11"
    rt("start", c.id, check=True)
    rt("pause", c.id, check=True)
    rt("update", "--pids-limit", "12", c.id, check=True)
    assert host_read(rt, c.id, "pids.max") == "12"
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
    limit = host_read(rt, c.id, MEMORY_LIMIT)
    p = rt("update", *args, c.id, input=None if stdin is None else json.dumps(stdin).encode())
    assert match in error_line(p)
    assert host_read(rt, c.id, MEMORY_LIMIT) == limit
    assert not (Path(rt.root) / c.id / "resources.json").exists()


def test_update_device_access_unknown_letters_ignored(rt, containers) -> None:
    c = containers(["sleep", "1000"])
    rules = [{"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rqw"}]
    rt("update", "--resources", "-", c.id, input=json.dumps({"devices": rules}).encode(), check=True)
    warnings = [e["msg"] for e in map(json.loads, rt.log.read_text().splitlines()) if e["level"] == "warning"]
    assert warnings == ['linux.resources.devices[0].access: unknown access "q" ignored, "rw" is used']
    if not V2:
        assert "c 10:200 rw" in host_read(rt, c.id, "devices.list").splitlines()


def test_update_stopped_container_refused(rt, containers) -> None:
    c = containers(["true"])
    wait_status(rt, c.id, "stopped")
    assert "not running" in error_line(rt("update", "--memory", "64m", c.id))


# --- ps -----------------------------------------------------------------------------------------
def cgroup_pids(rt, cid: str) -> list[int]:
    return sorted(int(x) for x in host_read(rt, cid, "cgroup.procs", "pids").split())


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
    cpu_before = cpu_usage_ns(rt, c.id)
    p = rt("events", "--stats", c.id, check=True)
    cpu_after = cpu_usage_ns(rt, c.id)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert list(ev) == ["type", "id", "data"] and ev["type"] == "stats" and ev["id"] == c.id
    data = ev["data"]
    assert {"cpu", "memory", "pids", "blkio", "hugetlb"} <= set(data)
    assert data["memory"]["usage"]["limit"] == 64 << 20
    assert data["memory"]["usage"]["usage"] > 0
    # raw is memory.stat as the kernel lists it: v1's totals, v2's anon/file breakdown.
    raw = data["memory"]["raw"]
    assert set(raw) == set(keyed(host_read(rt, c.id, "memory.stat")))
    assert set(per_layout(("rss", "total_rss", "cache"), ("anon", "file", "kernel_stack"))) <= set(raw)
    assert data["pids"] == {"current": 1, "limit": 9}
    usage = data["cpu"]["usage"]
    assert 0 < cpu_before <= usage["total"] <= cpu_after
    # v1's cpuacct counts per cpu; cgroup v2 has no per-cpu counters (runc leaves them out too).
    if V2:
        assert "percpu" not in usage and {"user", "kernel"} <= set(usage)
    else:
        assert len(usage["percpu"]) == os.cpu_count()


def cpu_usage_ns(rt, cid: str) -> int:
    """The cgroup's CPU time so far: cpuacct.usage (ns) on v1, cpu.stat usage_usec on v2."""
    if V2:
        return keyed(host_read(rt, cid, "cpu.stat"))["usage_usec"] * 1000
    return int(host_read(rt, cid, "cpuacct.usage"))


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


def test_events_stream_ends_when_container_is_deleted(rt, containers) -> None:
    c = containers(["sleep", "1000"])
    proc = events_proc(rt, "--interval", "50ms", c.id)
    try:
        assert read_event(proc)["type"] == "stats"  # the stream and its OOM watch are set up
        # Stopped meanwhile, the stream wakes up to the init's exit and the removed cgroup at once.
        proc.send_signal(signal.SIGSTOP)
        rt("delete", "--force", c.id, check=True)
        proc.send_signal(signal.SIGCONT)
        rest, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (0, b"")
    assert all(json.loads(line)["type"] == "stats" for line in rest.splitlines())


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
    # The kernel's own count: memory.oom_control on v1, memory.events on v2.
    assert keyed(host_read(rt, c.id, per_layout("memory.oom_control", "memory.events")))["oom_kill"] == 1


def test_events_errors(rt, containers) -> None:
    c = containers(["true"])
    wait_status(rt, c.id, "stopped")
    assert "not running" in error_line(rt("events", "--stats", c.id))
    assert "not running" in error_line(rt("events", c.id))
    assert "greater than 0" in error_line(rt("events", "--interval", "0s", c.id))
    assert "invalid duration" in error_line(rt("events", "--interval", "5", c.id))
    assert "does not exist" in error_line(rt("events", "--stats", new_id()))
