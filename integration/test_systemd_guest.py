"""systemd as PID 1: what the systemd cgroup driver's tests rely on (``make test-systemd``).

These run only in the qemu guest of ``integration/v2guest/run.py --systemd``, which sets
``OCIRUNTIME_GUEST`` to ``systemd-v2`` (pure cgroup v2) or ``systemd-hybrid`` (v1 controllers
plus cgroup2 at /sys/fs/cgroup/unified); anywhere else they skip.  They check the guest itself:
systemd is PID 1 and reachable over its private socket and the system bus, transient scopes
work, the cgroup layout is the one asked for, and none of this machine's enabled units ran.
What they find (mounts, cgroups, failed units) is printed into pytest.log.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ociruntime.cgroups import detect_layout

GUEST = os.environ.get("OCIRUNTIME_GUEST", "")
if GUEST not in ("systemd-v2", "systemd-hybrid"):
    pytest.skip("needs the systemd guest (OCIRUNTIME_GUEST=systemd-v2 or systemd-hybrid): "
                "run make test-systemd", allow_module_level=True)

pytestmark = [pytest.mark.root, pytest.mark.systemd]

CGROUP = "/sys/fs/cgroup"
# The v1 hierarchies systemd 252 mounts in the hybrid layout (Debian's kernel has them all).
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print into pytest.log even when the test passes."""
    with capsys.disabled():
        print(f"\n{text}")


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every mount at or below /sys/fs/cgroup."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == CGROUP or fields[4].startswith(CGROUP + "/"):
                found.append((fields[4], fields[sep + 1], fields[sep + 3]))
    return found


def test_pid1_is_systemd() -> None:
    assert Path("/proc/1/comm").read_text().strip() == "systemd"
    assert os.path.realpath("/proc/1/exe") == "/usr/lib/systemd/systemd"
    assert os.path.isdir("/run/systemd/system")  # sd_booted(): what the driver's tests check


def test_system_is_up(capsys: pytest.CaptureFixture[str]) -> None:
    state = run("systemctl", "is-system-running").stdout.strip()
    failed = run("systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager").stdout
    show(capsys, f"systemctl is-system-running: {state}\nfailed units: {failed.strip() or 'none'}")
    assert state in ("running", "degraded")
    assert Path("/run/systemd/private").is_socket()


def test_manager_answers_on_the_system_bus() -> None:
    assert Path("/run/dbus/system_bus_socket").is_socket()
    p = run("busctl", "--system", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager", "GetUnit", "s", "init.scope")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == 'o "/org/freedesktop/systemd1/unit/init_2escope"'


def test_transient_scope(capsys: pytest.CaptureFixture[str]) -> None:
    """systemd-run --scope: the command runs in a new scope with a memory limit set by systemd."""
    unit = f"v2guest-{uuid.uuid4().hex[:12]}.scope"
    script = ("cat /proc/self/cgroup; cat /sys/fs/cgroup/memory/$(sed -n 's/^[0-9]*:memory://p' "
              "/proc/self/cgroup)/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/$(sed -n "
              "'s/^0:://p' /proc/self/cgroup)/memory.max")
    p = run("systemd-run", "--scope", f"--unit={unit}", "-p", "MemoryMax=64M", "--quiet", "sh", "-c", script)
    show(capsys, f"systemd-run --scope --unit={unit} -p MemoryMax=64M:\n{p.stdout}{p.stderr}")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    # The scope is system.slice's (systemd-run's default) in the hierarchy systemd tracks with.
    tracking = "0::" if GUEST == "systemd-v2" else "1:name=systemd:"
    assert f"{tracking}/system.slice/{unit}" in lines
    assert lines[-1] == str(64 << 20)
    # Gone soon after its process (the leak check counts a cgroup left behind).
    for _ in range(50):
        state = run("systemctl", "is-active", unit).stdout.strip()
        if state == "inactive":
            break
        time.sleep(0.1)
    assert state == "inactive"


def test_cgroup_layout(capsys: pytest.CaptureFixture[str]) -> None:
    mounts = cgroup_mounts()
    own = Path("/proc/self/cgroup").read_text()
    entries = sorted(os.listdir(CGROUP))
    links = [f"{e} -> {os.readlink(os.path.join(CGROUP, e))}" for e in entries
             if os.path.islink(os.path.join(CGROUP, e))]
    show(capsys, "cgroup mounts:\n" + "\n".join(" ".join(m) for m in mounts) + f"\n/proc/self/cgroup:\n{own}"
         + (f"symbolic links in {CGROUP}: {', '.join(links)}" if links else ""))
    layout = detect_layout()
    if GUEST == "systemd-v2":
        assert [(m[0], m[1]) for m in mounts] == [(CGROUP, "cgroup2")]
        assert "nsdelegate" in mounts[0][2]
        assert layout.mode == "v2" and layout.unified is not None and layout.unified.mountpoint == CGROUP
        assert own == "0::/system.slice/v2guest-tests.service\n"
    else:
        assert (CGROUP, "tmpfs") == mounts[0][:2]
        assert (f"{CGROUP}/unified", "cgroup2") in [m[:2] for m in mounts]
        assert (f"{CGROUP}/systemd", "cgroup") in [m[:2] for m in mounts]
        assert layout.mode == "hybrid" and layout.unified is not None
        assert layout.unified.mountpoint == f"{CGROUP}/unified"
        assert set(V1_CONTROLLERS) <= set(layout.v1), sorted(layout.v1)
        assert "0::/system.slice/v2guest-tests.service" in own.splitlines()
        assert "1:name=systemd:/system.slice/v2guest-tests.service" in own.splitlines()


def test_modules_autoload() -> None:
    """The kernel loads modules on demand (veth here) from the guest kernel's tree, as in the
    cgroupv2 guest."""
    p = run("unshare", "--net", "ip", "link", "add", "v2g0", "type", "veth", "peer", "name", "v2g1")
    assert p.returncode == 0, p.stderr
    assert Path("/sys/module/veth").is_dir()


def test_no_enabled_unit_of_this_machine_started(capsys: pytest.CaptureFixture[str]) -> None:
    """Only v2guest.target's units run: not containerd, docker, ssh... that /etc enables."""
    enabled = sorted({os.path.basename(p) for p in glob.glob("/etc/systemd/system/*.wants/*")})
    assert enabled, "this machine enables no unit: nothing to check"
    p = run("systemctl", "show", "-p", "Id", "-p", "ActiveState", "-p", "InactiveExitTimestampMonotonic",
            "--", *enabled)
    started = []
    for block in p.stdout.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("ActiveState") != "inactive" or props.get("InactiveExitTimestampMonotonic", "0") != "0":
            started.append(f"{props.get('Id')} ({props.get('ActiveState')})")
    show(capsys, f"enabled on this machine, started in the guest: {started or 'none'} (of {len(enabled)})")
    assert started == []
