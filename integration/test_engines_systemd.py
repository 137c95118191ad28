"""podman (``--cgroup-manager systemd``) and containerd (the runc shim with ``SystemdCgroup``:
``ctr --runc-systemd-cgroup``, and the CRI with ``SystemdCgroup = true`` as on a kubeadm node)
driving the runtime's systemd cgroup driver.

Needs systemd as PID 1: ``make test-systemd`` runs this in the qemu guest booted with systemd
(integration/v2guest/), elsewhere it skips.  The engines run as hermetically as in
test_podman.py and test_containerd.py (whose helpers this reuses); what differs is the cgroup:
a transient scope that systemd shows, in the slice the engine names, gone after removal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import new_id
from engines import remove_empty_cgroups, wait_for
from test_containerd import LOOP as CTR_LOOP
from test_containerd import Ctr, containerd_env  # noqa: F401  (the private containerd)
from test_cri import HANDLERS, Cri, CriEnv, _remove_all_pods, cri_daemon
from test_podman import IMAGE, Podman, podman_env  # noqa: F401  (the private podman)

pytestmark = pytest.mark.root

if not os.path.isdir("/run/systemd/system"):
    pytest.skip("needs systemd as PID 1; run make test-systemd", allow_module_level=True)


def unit_state(unit: str) -> str:
    out = subprocess.run(["systemctl", "show", unit, "-p", "LoadState,ActiveState"], capture_output=True,
                         text=True, check=True).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return "gone" if props.get("LoadState") == "not-found" else props.get("ActiveState", "?")


def scope_of(pid: int | str) -> str:
    """The scope the process is in, from /proc/<pid>/cgroup (name=systemd or the v2 line)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        if ctrl in ("", "name=systemd") and path.endswith(".scope"):
            return path
    raise AssertionError(Path(f"/proc/{pid}/cgroup").read_text())


# ---- podman --cgroup-manager systemd ---------------------------------------------------------------

@pytest.fixture
def podman_sd(podman_env: Podman) -> Iterator[Podman]:  # noqa: F811
    conf = podman_env.tmp / "containers.conf"
    original, base = conf.read_text(), list(podman_env.base)
    conf.write_text(original.replace('cgroup_manager = "cgroupfs"', 'cgroup_manager = "systemd"'))
    podman_env.base[podman_env.base.index("--cgroup-manager") + 1] = "systemd"
    had_slice = unit_state("machine.slice") == "active"
    try:
        yield podman_env
    finally:
        podman_env("rm", "--all", "--force", "--time", "0")
        conf.write_text(original)
        podman_env.base[:] = base
        if not had_slice:
            # systemd keeps the slice podman's scopes went into; it is the test's to remove.
            subprocess.run(["systemctl", "stop", "machine.slice"], check=False)


def test_podman_run_rm_in_a_libpod_scope(podman_sd: Podman) -> None:
    p = podman_sd.run_rm(IMAGE, "sh", "-c", "cat /proc/self/cgroup; exit 7")
    assert p.returncode == 7, p.stderr
    # cgroupns is private on v2: the container sees "/"; on hybrid its own scope path.
    assert "libpod-" in p.stdout or "0::/\n" in p.stdout, p.stdout


def test_podman_detached_exec_stop_rm(podman_sd: Podman) -> None:
    cid = podman_sd.detached()
    pid = podman_sd.pid(cid)
    scope = scope_of(pid)
    unit = scope.rsplit("/", 1)[1]
    assert unit == f"libpod-{cid}.scope" and "/machine.slice/" in scope + "/"
    assert unit_state(unit) == "active"
    assert podman_sd("exec", cid, "echo", "hi", check=True).stdout == "hi\n"
    podman_sd("stop", "-t", "10", cid, check=True)
    assert podman_sd.inspect(cid, "{{.State.ExitCode}}") == "3"
    podman_sd("rm", cid, check=True)
    wait_for(lambda: unit_state(unit) == "gone", f"{unit} to go")


# ---- containerd: the runc shim with the systemd cgroup driver ----------------------------------

@pytest.fixture
def ctr_sd(containerd_env: Ctr) -> Iterator[Ctr]:  # noqa: F811
    yield containerd_env
    containerd_env.remove_everything()


def _ctr_cgroup(cid: str) -> tuple[str, str]:
    return f"system.slice:ocitest:{cid}", f"ocitest-{cid}.scope"


def test_ctr_run_rm_in_its_scope(ctr_sd: Ctr) -> None:
    cid = new_id("ctr")
    path, unit = _ctr_cgroup(cid)
    p = ctr_sd.run("--runc-systemd-cgroup", "--cgroup", path, cid=cid,
                   args=["sh", "-c", "cat /proc/self/cgroup; exit 5"])
    assert p.returncode == 5, p.stderr
    assert f"/system.slice/{unit}" in p.stdout, p.stdout
    wait_for(lambda: unit_state(unit) == "gone", f"{unit} to go")


def test_ctr_detached_pause_kill_rm(ctr_sd: Ctr) -> None:
    cid = new_id("ctr")
    path, unit = _ctr_cgroup(cid)
    ctr_sd.run("--runc-systemd-cgroup", "--cgroup", path, cid=cid, args=CTR_LOOP, detach=True, check=True)
    pid = int(ctr_sd.task(cid)["pid"])
    assert scope_of(pid) == f"/system.slice/{unit}"
    assert unit_state(unit) == "active"
    ctr_sd("task", "pause", cid, check=True)
    assert ctr_sd.task(cid)["status"] == "PAUSED"
    ctr_sd("task", "resume", cid, check=True)
    ctr_sd("task", "kill", "--signal", "SIGKILL", cid, check=True)
    wait_for(lambda: ctr_sd.task(cid)["status"] == "STOPPED", "the task to stop")
    ctr_sd("task", "rm", cid, check=True)
    ctr_sd("container", "rm", cid, check=True)
    wait_for(lambda: unit_state(unit) == "gone", f"{unit} to go")



# ---- containerd's CRI with SystemdCgroup = true (a kubeadm node) ---------------------------------

@pytest.fixture(scope="module")
def cri_sd(tmp_path_factory: pytest.TempPathFactory, rootfs_cache: Path, checker: Path) -> Iterator[CriEnv]:
    with cri_daemon(tmp_path_factory.mktemp("cri-sd"), rootfs_cache, checker, systemd_cgroup=True) as env:
        yield env


@pytest.mark.parametrize("handler", list(HANDLERS))
def test_cri_systemd_cgroup(cri_sd: CriEnv, handler: str, tmp_path: Path) -> None:
    """The kubelet's systemd driver names a pod's parent as a slice (kubepods-...-pod<uid>.slice);
    containerd then gives each container ``<slice>:cri-containerd:<id>``: a transient scope in
    that (nested, made on demand) slice, with the pod's limits as unit properties."""
    had_slice = unit_state("ocitest.slice") == "active"
    cri = Cri(cri_sd, handler, tmp_path)
    cri.cgroup_parent = f"ocitest-cri{os.getpid()}.slice"
    try:
        pod = cri.run_pod()
        cid = pod.start(resources={"memory_limit_in_bytes": 64 << 20, "cpu_shares": 512})
        pid = pod.host_pid(cid)
        scope = scope_of(pid)
        unit = f"cri-containerd-{cid}.scope"
        assert scope == f"/ocitest.slice/{cri.cgroup_parent}/{unit}", scope
        assert unit_state(unit) == "active"
        props = subprocess.run(["systemctl", "show", unit, "-p", "MemoryMax,MemoryLimit"],
                               capture_output=True, text=True, check=True).stdout
        assert f"={64 << 20}" in props, props
        assert pod.sh(cid, "echo hi") == "hi\n"
        cri("StopContainer", container_id=cid, timeout=10)
        cri("RemoveContainer", container_id=cid)
        wait_for(lambda: unit_state(unit) == "gone", f"{unit} to go")
        cri("StopPodSandbox", pod_sandbox_id=pod.id)
        cri("RemovePodSandbox", pod_sandbox_id=pod.id)
    finally:
        _remove_all_pods(cri_sd.client)
        if not had_slice:
            subprocess.run(["systemctl", "stop", "ocitest.slice"], check=False)
            # On hybrid the v1 hierarchies systemd does not manage got the slices' directories
            # from the runtimes (runc and ours alike); they are the test's to remove.
            remove_empty_cgroups("ocitest.slice")
