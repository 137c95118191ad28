"""Helpers shared by the real-engine tests (test_podman.py, test_containerd.py, test_cri.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from conftest import runtime_cmd

CGROUP_ROOT = Path("/sys/fs/cgroup")


def launcher(tmp: Path) -> str:
    """A single executable for the runtime under test, named ``ociruntime`` (clients take a path)."""
    cmd = runtime_cmd()
    if len(cmd) == 1:
        return cmd[0]
    path = tmp / "bin" / "ociruntime"
    path.parent.mkdir()
    path.write_text(f'#!/bin/sh\nexec {shlex.join(cmd)} "$@"\n')
    path.chmod(0o755)
    return str(path)


def mounts_under(top: Path) -> list[str]:
    """Mount points at or below ``top``, deepest first (the order to unmount them in)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted({p for p in points if p == str(top) or p.startswith(f"{top}/")}, key=len, reverse=True)


def host_cgroup(pid: int, controller: str) -> Path:
    """The host directory of ``pid``'s cgroup in a v1 ``controller`` hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def proc_field(pid: int | str, name: str) -> str:
    """The first value of a ``/proc/<pid>/status`` line (``State``, ``CapBnd``, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split()[1]
    raise AssertionError(f"no {name} line")


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def remove_empty_cgroups(name: str) -> None:
    """rmdir ``/sys/fs/cgroup/<hierarchy>/<name>`` bottom-up wherever no process is left in it."""
    for top in CGROUP_ROOT.iterdir():
        base = top / name.lstrip("/")
        if not base.is_dir():
            continue
        for d, _, _ in os.walk(base, topdown=False):
            try:
                if not Path(d, "cgroup.procs").read_text().strip():
                    os.rmdir(d)
            except OSError:
                continue


def stop_daemon(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


# ---- images -------------------------------------------------------------------------------------

def _blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_oci_archive(rootfs: Path, dest: Path, work: Path, cmd: list[str] | None = None) -> None:
    """An OCI image layout (image-spec v1.0) of ``rootfs`` as one layer, tarred to ``dest``; the
    image's ``Cmd`` is ``cmd`` (default ``sh``)."""
    blobs = work / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_tar = work / "layer.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(layer_tar), "."],
                   check=True, timeout=60)
    layer = _blob(blobs, layer_tar.read_bytes())
    layer_tar.unlink()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                         "Cmd": cmd or ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
    config_desc = _blob(blobs, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}]}
    manifest_desc = _blob(blobs, json.dumps(manifest).encode())
    # A bare tag as ref.name: `ctr image import --base-name NAME` turns it into NAME:latest.
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (work / "index.json").write_text(json.dumps(index))
    (work / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    with tarfile.open(dest, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(work / name, arcname=name)


_NO_SNAPSHOTTERS = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]


def containerd_config(tmp: Path, *, cri: bool) -> str:
    """The head of a private containerd's config.toml (version 2): everything under ``tmp``, the
    snapshotters this machine lacks disabled, and the CRI plugin too unless ``cri``."""
    disabled = ([] if cri else ["io.containerd.grpc.v1.cri"]) + _NO_SNAPSHOTTERS
    return f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = {json.dumps(disabled)}

[grpc]
  address = "{tmp}/containerd.sock"

[ttrpc]
  address = "{tmp}/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
"""
