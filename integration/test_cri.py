"""Kubernetes' view: containerd 1.6's CRI (``runtime.v1`` over gRPC) with the runtime as a handler.

Kubernetes reaches a runtime through containerd's CRI plugin, with the runtime as the
``BinaryName`` of a runc v2 shim handler.  The CRI validation suite (critest) cannot be built here,
so these tests speak the CRI themselves (integration/cri_client.py: our own protobuf codec over
``grpcio``, and a websocket client for streaming ``Exec``) and run every scenario against two
handlers of one daemon: ``ociruntime`` (the shim calls the runtime under test) and ``runc``
(``/usr/sbin/runc``), so that "passes as it does with runc" is shown side by side.

A private containerd runs for the session, everything under one temporary directory: config.toml
(version 2), root, state, gRPC and ttrpc sockets, each handler's runtime ``Root``, the pods' log
directories.  The CRI plugin keeps network namespaces in its state directory
(``netns_mounts_under_state_dir``); CNI has one loopback-only network (``/usr/lib/cni/loopback``
and a plugin of ours that reports lo's 127.0.0.1 as the pod's address: no bridge, no traffic,
nothing in the host's network namespace); the streaming server listens on 127.0.0.1.  The
images are OCI archives of the busybox rootfs of bundles/build.py imported with ``ctr -n k8s.io
image import``: one with ``sh`` as its command for the containers and one whose command sleeps
until SIGTERM as the sandbox ("pause") image.  Only the shims' sockets go to /run/containerd/s
(a fixed path in containerd 1.6); they disappear with the shims.

Pods use ``cgroup_parent`` ``/ocitest-cri-<uuid>``; the ``cri`` fixture stops and removes every pod
(and so its containers) after each test and removes the then empty parent in every hierarchy,
before the leak check runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import bundles_build
from cri_client import (
    CONTAINER,
    CONTAINER_EXITED,
    CONTAINER_RUNNING,
    LOCALHOST,
    NODE,
    PROPAGATION_BIDIRECTIONAL,
    PROPAGATION_HOST_TO_CONTAINER,
    PROPAGATION_PRIVATE,
    RUNTIME_DEFAULT,
    SANDBOX_NOTREADY,
    SANDBOX_READY,
    UNCONFINED,
    CriClient,
    ExecStream,
    exit_code,
)
from engines import (
    CGROUP_ROOT,
    containerd_config,
    launcher,
    mounts_under,
    proc_field,
    remove_empty_cgroups,
    stop_daemon,
    wait_for,
    write_oci_archive,
)

pytestmark = pytest.mark.root

grpc = pytest.importorskip("grpc")

IMAGE = "localhost/ocitest-bb:latest"
PAUSE_IMAGE = "localhost/ocitest-pause:latest"
# The sandbox's process: pid 1 of the pod, gone on SIGTERM (containerd stops sandboxes with SIGKILL).
PAUSE_CMD = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
HANDLERS = {"ociruntime": None, "runc": "/usr/sbin/runc"}  # None: the runtime under test
TIMEOUT = 30
# containerd 1.6's default capabilities of a container that is not privileged.
DEFAULT_CAPS = 0xA80425FB


# ---- the daemon ---------------------------------------------------------------------------------

def _config(tmp: Path, binaries: dict[str, str], systemd_cgroup: bool = False) -> str:
    runtimes = "".join(f"""
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
  BinaryName = "{binary}"
  Root = "{tmp}/runtime-root/{name}"
  SystemdCgroup = {str(systemd_cgroup).lower()}
""" for name, binary in binaries.items())
    return containerd_config(tmp, cri=True) + f"""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  enable_tls_streaming = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The sandbox asks for -998; lowering it needs CAP_SYS_RESOURCE, which the test hosts lack
  # (runc fails the same way): keep containers at or above containerd's own value.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{tmp}/cni-bin"
  conf_dir = "{tmp}/cni"
  max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "ociruntime"
{runtimes}"""


# The pod network: lo up (the loopback plugin), nothing else.  The CRI plugin takes the pod's
# address from the interface it named (CNI_IFNAME, eth0), while loopback reports "lo"; the second
# plugin, ours, only renames that interface in the result, so the pod's address is 127.0.0.1.
LOOPBACK_CNI = {"cniVersion": "0.4.0", "name": "ocitest-loopback",
                "plugins": [{"type": "loopback"}, {"type": "ocitest-lo-result"}]}
LO_RESULT_PLUGIN = """#!/usr/bin/python3 -I
import json, os, sys
conf = json.load(sys.stdin)
command = os.environ.get("CNI_COMMAND")
if command == "VERSION":
    print(json.dumps({"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0"]}))
elif command == "ADD":
    result = conf["prevResult"]
    for interface in result.get("interfaces", []):
        if interface["name"] == "lo":
            interface["name"] = os.environ["CNI_IFNAME"]
    result["cniVersion"] = conf["cniVersion"]
    print(json.dumps(result))
"""


class CriEnv:
    """The private containerd: its CRI client, temporary directory and handlers' runtime roots."""

    def __init__(self, tmp: Path, client: CriClient) -> None:
        self.tmp = tmp
        self.client = client
        self.ctr = ["ctr", "--address", str(tmp / "containerd.sock"), "--namespace", "k8s.io"]

    def runtime_root(self, handler: str) -> Path:
        """Where the handler's runtime keeps its state (the shim adds the namespace)."""
        return self.tmp / "runtime-root" / handler / "k8s.io"


def _import_image(env: CriEnv, rootfs: Path, name: str, cmd: list[str]) -> None:
    work = env.tmp / f"layout-{name.rsplit('/', 1)[1]}"
    work.mkdir()
    archive = work.with_suffix(".tar")
    write_oci_archive(rootfs, archive, work, cmd=cmd)
    p = subprocess.run([*env.ctr, "image", "import", "--base-name", name.rsplit(":", 1)[0], str(archive)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    shutil.rmtree(work)
    archive.unlink()


@contextlib.contextmanager
def cri_daemon(tmp: Path, rootfs_cache: Path, checker: Path, *, systemd_cgroup: bool = False
               ) -> Iterator[CriEnv]:
    """A private containerd with the CRI plugin and both handlers (with the systemd cgroup driver
    when ``systemd_cgroup``: kubeadm's ``SystemdCgroup = true``), the images imported; stopped,
    and checked to have left nothing, on exit."""
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "tar", "/usr/sbin/runc",
                 "/usr/lib/cni/loopback"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    binaries = {name: path or launcher(tmp) for name, path in HANDLERS.items()}
    (tmp / "config.toml").write_text(_config(tmp, binaries, systemd_cgroup))
    (tmp / "cni").mkdir()
    (tmp / "cni" / "10-loopback.conflist").write_text(json.dumps(LOOPBACK_CNI))
    (tmp / "cni-bin").mkdir()
    (tmp / "cni-bin" / "loopback").symlink_to("/usr/lib/cni/loopback")
    (tmp / "cni-bin" / "ocitest-lo-result").write_text(LO_RESULT_PLUGIN)
    (tmp / "cni-bin" / "ocitest-lo-result").chmod(0o755)
    log = open(tmp / "containerd.log", "wb")
    daemon = subprocess.Popen(["containerd", "--config", str(tmp / "config.toml")], stdin=subprocess.DEVNULL,
                              stdout=log, stderr=log)
    client = None
    try:
        deadline = time.monotonic() + 30
        while not (tmp / "containerd.sock").exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start: {(tmp / 'containerd.log').read_text()}")
            time.sleep(0.1)
        client = CriClient(str(tmp / "containerd.sock"), timeout=TIMEOUT)
        env = CriEnv(tmp, client)
        while True:
            try:
                client.call("Version", _deadline=5)
                break
            except grpc.RpcError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        bundles_build.build_bundle(tmp / "image", checker=checker, rootfs_cache=rootfs_cache)
        _import_image(env, tmp / "image" / "rootfs", IMAGE, ["sh"])
        _import_image(env, tmp / "image" / "rootfs", PAUSE_IMAGE, PAUSE_CMD)
        shutil.rmtree(tmp / "image")
        for image in (IMAGE, PAUSE_IMAGE):  # the CRI plugin learns of imports asynchronously
            wait_for(lambda image=image: client.call("ImageStatus", image={"image": image})["image"]
                     is not None, f"the CRI to see {image}")
        yield env
    finally:
        if daemon.poll() is None:
            if client is not None:
                _remove_all_pods(client)
            stop_daemon(daemon)
        if client is not None:
            client.close()
        log.close()
        left = _leftovers(tmp)
        for point in mounts_under(tmp):
            subprocess.run(["umount", "-R", point], timeout=TIMEOUT, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"left behind by the CRI tests: {left}"


@pytest.fixture(scope="session")
def cri_env(tmp_path_factory: pytest.TempPathFactory, rootfs_cache: Path, checker: Path) -> Iterator[CriEnv]:
    with cri_daemon(tmp_path_factory.mktemp("cri"), rootfs_cache, checker) as env:
        yield env


def _leftovers(tmp: Path) -> list[str]:
    """What the stopped daemon left: mounts under ``tmp``, network namespace files, containers in a
    handler's runtime root, processes naming ``tmp`` (shims)."""
    netns = tmp / "state" / "io.containerd.grpc.v1.cri" / "netns"
    shims = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and str(tmp).encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                shims.append(f"process {name}")
        except OSError:
            continue
    states = tmp.glob("runtime-root/*/k8s.io/*")
    return [*mounts_under(tmp), *(str(p) for p in (*netns.glob("*"), *states)), *shims]


def _remove_all_pods(client: CriClient) -> None:
    for pod in client.call("ListPodSandbox")["items"]:
        try:
            client.call("StopPodSandbox", pod_sandbox_id=pod["id"])
            client.call("RemovePodSandbox", pod_sandbox_id=pod["id"])
        except grpc.RpcError:
            continue


class Cri:
    """One test's view: the handler its pods use, their cgroup parent, helpers for the CRI calls."""

    def __init__(self, env: CriEnv, handler: str, tmp: Path) -> None:
        self.env = env
        self.client = env.client
        self.handler = handler
        self.tmp = tmp
        self.cgroup_parent = f"/ocitest-cri-{uuid.uuid4().hex[:12]}"
        self.n = 0

    def __call__(self, method: str, **request: Any) -> dict[str, Any]:
        return self.client.call(method, **request)

    def pod_config(self, *, security: dict | None = None, sysctls: dict[str, str] | None = None
                   ) -> dict[str, Any]:
        self.n += 1
        name = f"pod{self.n}"
        logs = self.tmp / "logs" / name
        logs.mkdir(parents=True)
        return {"metadata": {"name": name, "uid": uuid.uuid4().hex, "namespace": "ocitest"},
                "hostname": name, "log_directory": str(logs),
                "linux": {"cgroup_parent": self.cgroup_parent, "security_context": security or {},
                          "sysctls": sysctls or {}}}

    def run_pod(self, **kw: Any) -> Pod:
        config = self.pod_config(**kw)
        pid = self("RunPodSandbox", config=config, runtime_handler=self.handler)["pod_sandbox_id"]
        return Pod(self, pid, config)


class Pod:
    def __init__(self, cri: Cri, pod_id: str, config: dict[str, Any]) -> None:
        self.cri = cri
        self.id = pod_id
        self.config = config
        self.n = 0

    def status(self) -> dict[str, Any]:
        return self.cri("PodSandboxStatus", pod_sandbox_id=self.id)["status"]

    def create(self, command: list[str], *, security: dict | None = None, resources: dict | None = None,
               mounts: list[dict] | None = None, tty: bool = False) -> str:
        self.n += 1
        config = {"metadata": {"name": f"c{self.n}"}, "image": {"image": IMAGE}, "command": command,
                  "log_path": f"c{self.n}.log", "mounts": mounts, "tty": tty,
                  "linux": {"security_context": security or {}, "resources": resources}}
        return self.cri("CreateContainer", pod_sandbox_id=self.id, config=config,
                        sandbox_config=self.config)["container_id"]

    def start(self, command: list[str] | None = None, **kw: Any) -> str:
        """A started container running ``command`` (default: sleep until SIGTERM)."""
        cid = self.create(command or SLEEP, **kw)
        self.cri("StartContainer", container_id=cid)
        return cid

    def status_of(self, cid: str) -> dict[str, Any]:
        return self.cri("ContainerStatus", container_id=cid)["status"]

    def wait_exit(self, cid: str) -> dict[str, Any]:
        wait_for(lambda: self.status_of(cid)["state"] == CONTAINER_EXITED, f"container {cid} to exit")
        return self.status_of(cid)

    def exec(self, cid: str, *cmd: str, timeout: int = 0) -> tuple[int, str, str]:
        r = self.cri("ExecSync", container_id=cid, cmd=list(cmd), timeout=timeout)
        return r["exit_code"], r["stdout"].decode(), r["stderr"].decode()

    def sh(self, cid: str, script: str) -> str:
        """stdout of ``sh -c script`` in the container, which must succeed."""
        code, out, err = self.exec(cid, "sh", "-c", script)
        assert code == 0, (script, code, out, err)
        return out

    def host_pid(self, cid: str) -> int:
        info = json.loads(self.cri("ContainerStatus", container_id=cid, verbose=True)["info"]["info"])
        return int(info["pid"])

    def sandbox_pid(self) -> int:
        info = json.loads(self.cri("PodSandboxStatus", pod_sandbox_id=self.id, verbose=True)["info"]["info"])
        return int(info["pid"])


@pytest.fixture(params=list(HANDLERS))
def cri(request: pytest.FixtureRequest, cri_env: CriEnv, tmp_path: Path) -> Iterator[Cri]:
    """Requested by each test: set up after the autouse leak check, so torn down before it."""
    c = Cri(cri_env, request.param, tmp_path)
    yield c
    _remove_all_pods(cri_env.client)
    remove_empty_cgroups(c.cgroup_parent)
    left = [str(top / c.cgroup_parent.lstrip("/")) for top in CGROUP_ROOT.iterdir()
            if (top / c.cgroup_parent.lstrip("/")).exists()]
    assert not left, f"cgroups left: {left}"


def caps(hexmask: str) -> int:
    return int(hexmask, 16)


# ---- version, status, lifecycle -----------------------------------------------------------------

def test_version_and_status(cri: Cri) -> None:
    v = cri("Version", version="v1")
    assert (v["runtime_name"], v["runtime_api_version"]) == ("containerd", "v1")
    conditions = {c["type"]: c["status"] for c in cri("Status")["status"]["conditions"]}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}


def test_pod_lifecycle(cri: Cri) -> None:
    pod = cri.run_pod()
    status = pod.status()
    assert (status["state"], status["runtime_handler"]) == (SANDBOX_READY, cri.handler)
    assert status["network"]["ip"] == "127.0.0.1"  # the loopback plugin's result
    # The handler's runtime keeps the sandbox container's state under its own Root.
    assert (cri.env.runtime_root(cri.handler) / pod.id / "state.json").is_file()
    pid = pod.sandbox_pid()
    # (runc's start returns before its init has exec'd the process)
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh", b"-c"],
             "the sandbox's command")
    assert "/ocitest-cri-" in Path(f"/proc/{pid}/cgroup").read_text()
    cri("StopPodSandbox", pod_sandbox_id=pod.id)
    assert pod.status()["state"] == SANDBOX_NOTREADY
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the sandbox process to end")
    cri("RemovePodSandbox", pod_sandbox_id=pod.id)
    assert pod.id not in [p["id"] for p in cri("ListPodSandbox")["items"]]
    assert not (cri.env.runtime_root(cri.handler) / pod.id).exists()


LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) (.*)$")


def test_container_lifecycle_and_log(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start(["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"])
    status = pod.wait_exit(cid)
    assert (status["exit_code"], status["reason"]) == (3, "Error")
    assert status["started_at"] > 0 and status["finished_at"] > 0
    log = Path(status["log_path"])
    assert log == Path(pod.config["log_directory"]) / "c1.log"
    lines = [LOG_LINE.match(line) for line in log.read_text().splitlines()]
    assert all(lines), log.read_text()
    got = [(m[2], m[3], m[4]) for m in lines if m]
    assert sorted(got) == sorted([("stdout", "F", "out1"), ("stderr", "F", "err1"), ("stdout", "F", "out2")])
    assert [g for g in got if g[0] == "stdout"] == [("stdout", "F", "out1"), ("stdout", "F", "out2")]
    # a clean exit; the shim gave no stdin: the init has the container's /dev/null, read-write
    # (runc's reOpenDevNull)
    cid2 = pod.start(["sh", "-c", "grep -q '^flags:.*2$' /proc/self/fdinfo/0"])
    assert (pod.wait_exit(cid2)["exit_code"], pod.status_of(cid2)["reason"]) == (0, "Completed")
    # stop: SIGTERM answered (trap exits 0)
    cid3 = pod.start()
    assert pod.status_of(cid3)["state"] == CONTAINER_RUNNING
    root = cri.env.runtime_root(cri.handler)
    assert (root / cid3 / "state.json").is_file()
    t0 = time.monotonic()
    cri("StopContainer", container_id=cid3, timeout=10)
    assert time.monotonic() - t0 < 5
    assert (pod.status_of(cid3)["state"], pod.status_of(cid3)["exit_code"]) == (CONTAINER_EXITED, 0)
    # stop: SIGTERM ignored, SIGKILL after the timeout
    cid4 = pod.start(["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    t0 = time.monotonic()
    cri("StopContainer", container_id=cid4, timeout=1)
    assert time.monotonic() - t0 >= 1
    assert pod.status_of(cid4)["exit_code"] == 137
    for c in (cid, cid2, cid3, cid4):
        cri("RemoveContainer", container_id=c)
        assert not (root / c).exists()
    assert cri("ListContainers")["containers"] == []


# ---- exec ---------------------------------------------------------------------------------------

def test_exec_sync(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start()
    assert pod.exec(cid, "sh", "-c", "echo out; echo err >&2; exit 7") == (7, "out\n", "err\n")
    assert pod.exec(cid, "cat", "/etc/hostname") == (0, "pod1\n", "")
    with pytest.raises(grpc.RpcError) as info:
        pod.exec(cid, "no-such-command")
    assert 'exec: "no-such-command": executable file not found in $PATH' in info.value.details()


def _procs_with_cmdline(cmdline: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and Path(f"/proc/{name}/cmdline").read_bytes() == cmdline:
                found.append(int(name))
        except OSError:
            continue
    return found


def test_exec_sync_timeout(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start()
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        pod.exec(cid, "sleep", "3737", timeout=1)
    assert time.monotonic() - t0 < 10
    assert "timeout 1s exceeded" in info.value.details()
    # the exec'd process was killed, the container lives on
    wait_for(lambda: not _procs_with_cmdline(b"sleep\x003737\x00"), "the timed-out exec to be killed")
    assert pod.exec(cid, "true") == (0, "", "")
    assert pod.status_of(cid)["state"] == CONTAINER_RUNNING


def test_exec_tty_stream(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start()
    url = cri("Exec", container_id=cid, cmd=["sh"], tty=True, stdin=True, stdout=True, stderr=False)["url"]
    assert url.startswith("http://127.0.0.1:")
    stream = ExecStream(url)
    try:
        stream.write(b"tty; echo got-$((6*7))\r")
        out = stream.read_until(b"got-42")
        assert re.search(rb"/dev/pts/\d+", out), out
        stream.resize(100, 30)
        # the resize travels apart from stdin: wait for it inside
        stream.write(b'for i in $(seq 50); do [ "$(stty size)" = "30 100" ] && break; sleep 0.1; done; '
                     b'echo size-$(stty size | tr " " x)\r')
        stream.read_until(b"size-30x100")
        stream.write(b"exit 6\r")
        status = stream.wait()
    finally:
        stream.close()
    assert exit_code(status) == 6, status
    assert status["reason"] == "NonZeroExitCode"
    # and a clean exit
    url = cri("Exec", container_id=cid, cmd=["sh", "-c", "read x; echo read:$x"], tty=True, stdin=True,
              stdout=True)["url"]
    stream = ExecStream(url)
    try:
        stream.write(b"abc\r")
        stream.read_until(b"read:abc")
        assert stream.wait()["status"] == "Success"
    finally:
        stream.close()


# ---- the pod's sysctls --------------------------------------------------------------------------

def test_sysctls(cri: Cri) -> None:
    host = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()
    pod = cri.run_pod(sysctls={"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "1234"})
    cid = pod.start()
    out = pod.sh(cid, "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert out.split() == ["1", "1234"]
    assert Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text() == host
    # set in the pod's namespaces (as the sandbox made them), not in the host's
    p = subprocess.run(["nsenter", "-t", str(pod.sandbox_pid()), "--ipc", "--net", "cat",
                        "/proc/sys/kernel/shm_rmid_forced", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
                       capture_output=True, text=True, timeout=TIMEOUT, check=True)
    assert p.stdout.split() == ["1", "1234"]


# ---- masked and read-only paths -----------------------------------------------------------------

PROC_MOUNT_OPTS = "awk '$2==\"%s\" {print $4}' /proc/mounts"
# What the kubelet sends for the default proc mount type (k8s.io/kubernetes pkg/securitycontext);
# containerd itself adds none.  /proc/kcore, /proc/sysrq-trigger and others do not exist on the test hosts'
# kernel: a runtime skips those.
KUBELET_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
KUBELET_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def test_masked_readonly_paths(cri: Cri) -> None:
    pod = cri.run_pod(security={"privileged": True})
    kubelet = {"masked_paths": KUBELET_MASKED, "readonly_paths": KUBELET_READONLY}
    default = pod.start(security=kubelet)
    # files masked by /dev/null, directories by an empty read-only tmpfs
    assert pod.sh(default, "stat -c %t,%T /proc/keys /proc/timer_list").split() == ["1,3", "1,3"]
    assert pod.sh(default, "ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l").split() == ["0", "0"]
    assert pod.sh(default, PROC_MOUNT_OPTS % "/proc/sys").startswith("ro,")
    assert pod.sh(default, PROC_MOUNT_OPTS % "/proc/irq").startswith("ro,")
    code, _, err = pod.exec(default, "sh", "-c", "echo 1 > /proc/sys/kernel/shm_rmid_forced")
    assert code != 0 and "Read-only file system" in err
    # the container's own lists
    own = pod.start(security={"masked_paths": ["/etc/group", "/home"], "readonly_paths": ["/tmp"]})
    assert pod.sh(own, "stat -c %t,%T /etc/group; wc -c < /etc/group; ls -A /home | wc -l").split() \
        == ["1,3", "0", "0"]
    code, _, err = pod.exec(own, "touch", "/tmp/x")
    assert code != 0 and "Read-only file system" in err
    assert pod.sh(own, PROC_MOUNT_OPTS % "/tmp").startswith("ro,")
    assert pod.sh(own, "stat -c %t,%T /proc/keys").strip() == "0,0"
    assert pod.sh(own, PROC_MOUNT_OPTS % "/proc/sys") == ""
    # privileged: the lists are dropped
    priv = pod.start(security={"privileged": True, **kubelet})
    assert pod.sh(priv, "stat -c %t,%T /proc/keys").strip() == "0,0"
    assert pod.sh(priv, PROC_MOUNT_OPTS % "/proc/sys") == ""


# ---- seccomp ------------------------------------------------------------------------------------

# A Localhost profile: everything allowed but the chmod family, which fails with EPERM.
NO_CHMOD = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["chmod", "fchmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]}


def test_seccomp_profiles(cri: Cri) -> None:
    profile = cri.tmp / "no-chmod.json"
    profile.write_text(json.dumps(NO_CHMOD))
    pod = cri.run_pod()
    probe = "grep ^Seccomp: /proc/self/status; unshare -U true && echo unshare-ok"
    # RuntimeDefault: containerd's profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN
    default = pod.start(security={"seccomp": {"profile_type": RUNTIME_DEFAULT}})
    code, out, err = pod.exec(default, "sh", "-c", probe)
    assert (code, out.split()) == (1, ["Seccomp:", "2"]) and "unshare" in err, (out, err)
    unconfined = pod.start(security={"seccomp": {"profile_type": UNCONFINED}})
    assert pod.sh(unconfined, probe).split() == ["Seccomp:", "0", "unshare-ok"]
    local = pod.start(security={"seccomp": {"profile_type": LOCALHOST, "localhost_ref": str(profile)}})
    assert pod.sh(local, probe).split() == ["Seccomp:", "2", "unshare-ok"]
    code, out, err = pod.exec(local, "sh", "-c", "touch /tmp/f && echo touched && chmod 600 /tmp/f")
    assert code != 0 and out == "touched\n" and "Operation not permitted" in err, (out, err)
    assert pod.sh(local, "stat -c %a /tmp/f").strip() == "644"
    assert pod.sh(unconfined, "touch /tmp/g && chmod 600 /tmp/g && stat -c %a /tmp/g").strip() == "600"


# ---- pid and ipc namespaces ---------------------------------------------------------------------

def _cmdlines(pod: Pod, cid: str) -> list[str]:
    """Every process the container sees, as ``pid:args``."""
    out = pod.sh(cid, "for p in /proc/[0-9]*; do echo ${p#/proc/}:$(tr '\\0' ' ' < $p/cmdline); done")
    return [line.strip() for line in out.splitlines()]


def test_pid_namespace_node(cri: Cri) -> None:
    pod = cri.run_pod(security={"namespace_options": {"pid": NODE}})
    cid = pod.start(security={"namespace_options": {"pid": NODE}})
    seen = _cmdlines(pod, cid)
    assert any(line.startswith(f"{os.getpid()}:") for line in seen)  # this test's own process
    assert pod.sh(cid, "readlink /proc/self/ns/pid").strip() == os.readlink("/proc/self/ns/pid")


def test_pid_namespace_pod(cri: Cri) -> None:
    pod = cri.run_pod()
    first = pod.start(["sh", "-c", "trap 'exit 0' TERM; sleep 3601 & wait"])
    second = pod.start()
    seen = _cmdlines(pod, second)
    assert f"1:{' '.join(PAUSE_CMD)}" in seen, seen  # the sandbox is pid 1
    assert any(line.endswith(":sleep 3601") for line in seen), seen
    assert pod.sh(first, "readlink /proc/self/ns/pid") == pod.sh(second, "readlink /proc/self/ns/pid")
    sandbox = os.readlink(f"/proc/{pod.sandbox_pid()}/ns/pid")
    assert pod.sh(first, "readlink /proc/1/ns/pid").strip() == sandbox


def test_pid_namespace_container(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start(["sh", "-c", "trap 'exit 0' TERM; sleep 3602 & wait"],
                    security={"namespace_options": {"pid": CONTAINER}})
    seen = _cmdlines(pod, cid)
    assert seen[0].startswith("1:sh -c trap"), seen
    assert not any("while :" in line for line in seen), seen  # not the sandbox's
    own, sandbox = (os.readlink(f"/proc/{pid}/ns/pid") for pid in (pod.host_pid(cid), pod.sandbox_pid()))
    assert own != sandbox


libc = ctypes.CDLL(None, use_errno=True)
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0


def _shm_ids(text: str) -> set[int]:
    """The shmids of /proc/sysvipc/shm (second column, after a header line)."""
    return {int(line.split()[1]) for line in text.splitlines()[1:] if line.strip()}


def test_ipc_namespace_node(cri: Cri) -> None:
    shmid = libc.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600)
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    try:
        pod = cri.run_pod(security={"namespace_options": {"ipc": NODE}})
        cid = pod.start(security={"namespace_options": {"ipc": NODE}})
        assert shmid in _shm_ids(pod.sh(cid, "cat /proc/sysvipc/shm"))
        other = cri.run_pod()
        private = other.start()
        assert shmid not in _shm_ids(other.sh(private, "cat /proc/sysvipc/shm"))
    finally:
        assert libc.shmctl(shmid, IPC_RMID, None) == 0


def test_ipc_namespace_pod(cri: Cri) -> None:
    pod = cri.run_pod()
    first, second = pod.start(), pod.start()
    # a segment made in the pod's IPC namespace from the host side
    p = subprocess.run(["nsenter", "-t", str(pod.sandbox_pid()), "--ipc", "ipcmk", "-M", "4096"],
                       capture_output=True, text=True, timeout=TIMEOUT, check=True)
    shmid = int(p.stdout.split()[-1])
    assert shmid in _shm_ids(pod.sh(first, "cat /proc/sysvipc/shm"))
    assert shmid in _shm_ids(pod.sh(second, "cat /proc/sysvipc/shm"))
    assert shmid not in _shm_ids(Path("/proc/sysvipc/shm").read_text())
    assert pod.sh(first, "readlink /proc/self/ns/ipc") == pod.sh(second, "readlink /proc/self/ns/ipc")


# ---- users, rootfs, privileges ------------------------------------------------------------------

def test_run_as_user_group_supplemental(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start(security={"run_as_user": {"value": 1000}, "run_as_group": {"value": 1000},
                              "supplemental_groups": [1234, 5678]})
    uid, gid, groups = pod.sh(cid, "id -u; id -g; id -G").splitlines()
    assert (uid, gid, sorted(map(int, groups.split()))) == ("1000", "1000", [1000, 1234, 5678])
    assert proc_field(pod.host_pid(cid), "Uid") == "1000"
    by_name = pod.start(security={"run_as_username": "user"})
    assert pod.sh(by_name, "id -u; id -g").split() == ["1000", "1000"]
    root = pod.start(security={"run_as_user": {"value": 0}, "supplemental_groups": [4242]})
    assert pod.sh(root, "id -u; id -G").split() == ["0", "0", "10", "4242"]


def test_readonly_rootfs(cri: Cri) -> None:
    pod = cri.run_pod()
    cid = pod.start(security={"readonly_rootfs": True})
    code, _, err = pod.exec(cid, "touch", "/x")
    assert code != 0 and "Read-only file system" in err
    assert pod.sh(cid, "touch /dev/shm/x && echo ok") == "ok\n"  # the pod's /dev/shm stays writable
    rw = pod.start()
    assert pod.sh(rw, "touch /x && echo ok") == "ok\n"


def test_privileged(cri: Cri) -> None:
    pod = cri.run_pod(security={"privileged": True})
    priv = pod.start(security={"privileged": True})
    plain = pod.start()
    bounding = caps(proc_field("self", "CapBnd"))
    assert caps(pod.sh(priv, "grep ^CapEff: /proc/self/status").split()[1]) == bounding
    assert caps(pod.sh(plain, "grep ^CapEff: /proc/self/status").split()[1]) == DEFAULT_CAPS & bounding
    # host devices
    assert "kmsg" in pod.sh(priv, "ls /dev").split()
    assert "kmsg" not in pod.sh(plain, "ls /dev").split()


def test_privileged_cgroupfs_writable(cri: Cri) -> None:
    """containerd gives a privileged container a read-write cgroup mount (WithWriteableCgroupfs),
    which runc honours.  Without a cgroup namespace (containerd 1.6 makes none on a cgroup v1 or
    hybrid host) ociruntime forces cgroupfs read-only for every process that could not mount a
    writable one itself, so an unprivileged container's stays read-only."""
    pod = cri.run_pod(security={"privileged": True})
    plain = pod.start()
    hierarchy = "/sys/fs/cgroup/pids" if (CGROUP_ROOT / "pids").is_dir() else "/sys/fs/cgroup"
    assert pod.sh(plain, PROC_MOUNT_OPTS % hierarchy).startswith("ro,")
    priv = pod.start(security={"privileged": True})
    assert pod.sh(priv, PROC_MOUNT_OPTS % hierarchy).startswith("rw,")


def test_capabilities(cri: Cri) -> None:
    pod = cri.run_pod()
    added = pod.start(security={"capabilities": {"add_capabilities": ["SYS_ADMIN"],
                                                 "drop_capabilities": ["CHOWN"]}})
    eff, bnd = (caps(pod.sh(added, f"grep ^{f}: /proc/self/status").split()[1]) for f in ("CapEff", "CapBnd"))
    assert eff == bnd == (DEFAULT_CAPS | 1 << 21) & ~1
    only = pod.start(security={"capabilities": {"add_capabilities": ["NET_RAW"],
                                                "drop_capabilities": ["ALL"]}})
    assert caps(pod.sh(only, "grep ^CapEff: /proc/self/status").split()[1]) == 1 << 13
    code, _, err = pod.exec(only, "chown", "1:1", "/tmp")
    assert code != 0 and "Operation not permitted" in err


def test_no_new_privs_and_oom_score_adj(cri: Cri) -> None:
    pod = cri.run_pod()
    nnp = pod.start(security={"no_new_privs": True}, resources={"oom_score_adj": 500})
    plain = pod.start()
    assert pod.sh(nnp, "grep ^NoNewPrivs: /proc/self/status").split() == ["NoNewPrivs:", "1"]
    assert pod.sh(plain, "grep ^NoNewPrivs: /proc/self/status").split() == ["NoNewPrivs:", "0"]
    assert pod.sh(nnp, "cat /proc/self/oom_score_adj").strip() == "500"
    assert Path(f"/proc/{pod.host_pid(nnp)}/oom_score_adj").read_text().strip() == "500"


# ---- mount propagation --------------------------------------------------------------------------

@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A test-owned bind mount of a directory onto itself, made rshared; unmounted afterwards."""
    d = tmp_path / "shared"
    d.mkdir()
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True, timeout=TIMEOUT)
    try:
        subprocess.run(["mount", "--make-rshared", str(d)], check=True, timeout=TIMEOUT)
        yield d
    finally:
        for point in mounts_under(d):
            subprocess.run(["umount", "-l", point], timeout=TIMEOUT, check=False)


def test_mount_propagation(cri: Cri, shared_dir: Path) -> None:
    pod = cri.run_pod(security={"privileged": True})

    def volume(path: str, propagation: int) -> list[dict]:
        return [{"container_path": path, "host_path": str(shared_dir), "propagation": propagation}]

    private = pod.start(mounts=volume("/mnt/v", PROPAGATION_PRIVATE))
    slave = pod.start(mounts=volume("/mnt/v", PROPAGATION_HOST_TO_CONTAINER))
    shared = pod.start(mounts=volume("/mnt/v", PROPAGATION_BIDIRECTIONAL), security={"privileged": True})
    # a mount made on the host after the start
    (shared_dir / "from-host").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "ocitest-host", str(shared_dir / "from-host")], check=True,
                   timeout=TIMEOUT)
    (shared_dir / "from-host" / "marker").write_text("host\n")
    assert pod.sh(slave, "cat /mnt/v/from-host/marker") == "host\n"
    assert pod.sh(shared, "cat /mnt/v/from-host/marker") == "host\n"
    assert pod.sh(private, "ls -A /mnt/v/from-host | wc -l").strip() == "0"
    # a mount made in the privileged, bidirectional container
    pod.sh(shared, "mkdir /mnt/v/from-ctr && mount -t tmpfs ocitest-ctr /mnt/v/from-ctr && "
                   "echo ctr > /mnt/v/from-ctr/marker")
    assert str(shared_dir / "from-ctr") in mounts_under(shared_dir)
    assert (shared_dir / "from-ctr" / "marker").read_text() == "ctr\n"
    assert pod.sh(slave, "cat /mnt/v/from-ctr/marker") == "ctr\n"
    assert pod.sh(private, "ls -A /mnt/v/from-ctr | wc -l").strip() == "0"
