"""`podman run --rm --network none <image> true` end to end, podman driving ociruntime vs runc.

What is timed: one whole `podman run --rm` as a user types it: podman sets up the container
from a local image, conmon calls the runtime's create, podman its start, conmon reports the
exit, podman deletes the container through the runtime and removes it from its storage.  The
runtime is only part of it; the ratio shows what the runtime's cost means to such a user.

Fair: both runtimes run under the same podman, storage and image, iterations interleaved with
alternating order, one warm-up each.  The only difference is `--runtime`.

Here, and only here, the runtimes keep their state in their default roots (/run/ociruntime,
/run/runc), as under podman in production: podman deletes a `--rm` container from its exit
command (`podman container cleanup`), which does not forward `--runtime-flag root=...`, so
with a private root every delete would fail at once and leave the container behind.  The
containers carry podman's random 64-hex ids; those still known to a runtime afterwards are
force-deleted, and a default root the benchmark created is removed again when it holds no
container.

podman never touches the machine's own podman state: as integration/test_podman.py does, it gets
a private `--root`/`--runroot` (vfs driver: no overlay mounts), its own containers.conf
(CONTAINERS_CONF) and storage.conf (CONTAINERS_STORAGE_CONF), XDG directories, network config
directory, tmp and volume directories, all in one temporary directory; `--cgroup-manager
cgroupfs`, `--events-backend file`.  The image, `localhost/ociruntime-bench-bb`, is the busybox
rootfs of bundles/build.py, `podman import`ed from a tarball inside a private mount namespace
with a tmpfs over /var/lib/containers/cache (or its nearest existing parent), because image
copies update the blob info cache there.  Afterwards: `podman rm --all --force`, podman's new
`libpod_parent` cgroups (those that did not exist before, and only when empty), any mount left
under the temporary directory, and the directory itself are removed.  Usage (as root):
bench/podman.py [--runtime CMD] [--runc PATH] [-n N] [--quick]
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BenchError, Context, Row, Runtime, median_row, spawn, standalone

IMAGE = "localhost/ociruntime-bench-bb"
TIMEOUT = 120.0
BLOB_CACHE = Path("/var/lib/containers/cache")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PODMAN_CGROUP = "libpod_parent"
# Where each runtime keeps its state when not given --root (as under podman).
DEFAULT_ROOTS = {"ociruntime": Path("/run/ociruntime"), "runc": Path("/run/runc")}


def containers_conf(tmp: Path, runtimes: dict[str, str]) -> str:
    """podman's whole configuration: test_podman.py's, with both runtimes known and JSON-capable."""
    table = "\n".join(f'{name} = ["{path}"]' for name, path in runtimes.items())
    names = ", ".join(f'"{name}"' for name in runtimes)
    return f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"

[network]
network_config_dir = "{tmp}/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{tmp}/tmp"
volume_path = "{tmp}/volumes"
runtime = "{next(iter(runtimes))}"
runtime_supports_json = [{names}]

[engine.runtimes]
{table}
"""


def storage_conf(tmp: Path) -> str:
    return f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp}/root"\nrunroot = "{tmp}/run"\n'


def cgroup_dirs() -> set[Path]:
    """Every directory of podman's ``libpod_parent`` subtree, in every hierarchy."""
    found: set[Path] = set()
    for top in CGROUP_ROOT.iterdir():
        base = top / PODMAN_CGROUP
        if base.is_dir():
            found.update(Path(d) for d, _, _ in os.walk(base))
    return found


def remove_new_cgroups(before: set[Path], wait: float = 10.0) -> None:
    """rmdir, deepest first, the ``libpod_parent`` directories that were not there ``before``.

    Like the test fixture's remove_cgroup_tree, it waits up to ``wait`` seconds for processes
    (conmon and its cleanup command exit after the container) and never removes a directory
    that holds any; directories that existed before the benchmark are another user's.
    """
    deadline = time.monotonic() + wait
    for d in sorted(cgroup_dirs() - before, key=lambda p: len(p.parts), reverse=True):
        while _procs_in(d) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            d.rmdir()


def _procs_in(cgroup: Path) -> bool:
    try:
        return bool((cgroup / "cgroup.procs").read_text().strip())
    except OSError:
        return False


def mounts_under(top: Path) -> list[str]:
    """Mount points at or below ``top``, deepest first (the order to unmount them in)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted({p for p in points if p == str(top) or p.startswith(f"{top}/")}, key=len, reverse=True)


class Podman:
    """podman with this benchmark's private storage and configuration."""

    def __init__(self, tmp: Path, runtimes: dict[str, str], log_fd: int) -> None:
        self.tmp = tmp
        self.runtimes = runtimes  # name -> executable podman is given with --runtime
        self.log_fd = log_fd
        self.env = dict(os.environ, CONTAINERS_CONF=str(tmp / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(tmp / "storage.conf"),
                        XDG_CONFIG_HOME=str(tmp / "xdg-config"), XDG_DATA_HOME=str(tmp / "xdg-data"),
                        XDG_RUNTIME_DIR=str(tmp / "xdg-run"))
        self.base = ["podman", "--root", str(tmp / "root"), "--runroot", str(tmp / "run"),
                     "--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"]

    def argv(self, name: str, *args: str) -> list[str]:
        """podman driving runtime ``name``."""
        return [*self.base, "--runtime", self.runtimes[name], *args]

    def __call__(self, name: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """An untimed podman command (set-up, clean-up), output captured."""
        return subprocess.run([*prefix, *self.argv(name, *args)], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)

    def checked(self, name: str, *args: str, prefix: tuple[str, ...] = ()) -> None:
        p = self(name, *args, prefix=prefix)
        if p.returncode != 0:
            raise BenchError(f"podman {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")

    def run_true(self, name: str) -> float:
        """The timed command: `podman run --rm --network none IMAGE true`; wall seconds."""
        r = spawn(self.argv(name, "run", "--rm", "--network", "none", IMAGE, "true"),
                  stderr=self.log_fd, timeout=TIMEOUT, env=self.env)
        if r.returncode != 0:
            tail = (self.tmp / "podman.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise BenchError(f"podman run with {name} exited {r.returncode}: {' / '.join(tail)}")
        return r.seconds

    def import_image(self, name: str, tarball: Path) -> None:
        """`podman import` in a private mount namespace where the blob info cache is a tmpfs."""
        target = BLOB_CACHE
        while not target.is_dir():
            target = target.parent
        script = f'mount -t tmpfs ociruntime-bench {shlex.quote(str(target))} && exec "$@"'
        self.checked(name, "import", str(tarball), IMAGE,
                     prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"))


def forget(rt: Runtime, ids: list[str], tmp: Path, created_roots: set[Path]) -> None:
    """Force-delete podman's containers ``rt`` still knows in its default root; drop a root we made."""
    root = DEFAULT_ROOTS.get(rt.name)
    if root is None or not root.is_dir():
        return
    default = Runtime(rt.name, rt.cmd, str(root), tmp / f"{rt.name}-cleanup.log")
    try:
        for cid in ids:
            if (root / cid).exists():
                with contextlib.suppress(Exception):
                    default.spawn("delete", "--force", cid)
    finally:
        default.close()
    # Any entry is a container: then keep the root.
    if root in created_roots and not os.listdir(root):
        shutil.rmtree(root, ignore_errors=True)


def launcher(tmp: Path, cmd: list[str], name: str) -> str:
    """One executable for podman's --runtime (it takes a path, not a command line)."""
    if len(cmd) == 1:
        return shutil.which(cmd[0]) or cmd[0]
    path = tmp / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec {shlex.join(cmd)} "$@"\n')
    path.chmod(0o755)
    return str(path)


@contextlib.contextmanager
def podman_env(ctx: Context) -> Iterator[Podman]:
    """Private podman storage, configuration and image; everything removed afterwards."""
    for tool in ("podman", "conmon", "unshare", "tar"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed")
    tmp = ctx.tmp / "podman"
    tmp.mkdir()
    # podman names a runtime after the basename of its path: keep them apart and known.
    runtimes = {rt.name: launcher(tmp, rt.cmd, rt.name) for rt in ctx.runtimes}
    names = {Path(path).name for path in runtimes.values()}
    if len(names) != len(runtimes):
        raise BenchError(f"podman needs runtime executables with distinct names, got {sorted(names)}")
    (tmp / "containers.conf").write_text(containers_conf(tmp, {Path(p).name: p for p in runtimes.values()}))
    (tmp / "storage.conf").write_text(storage_conf(tmp))
    for d in ("networks", "tmp", "volumes", "xdg-config", "xdg-data", "xdg-run"):
        (tmp / d).mkdir(mode=0o700)
    log_fd = os.open(tmp / "podman.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    pm = Podman(tmp, runtimes, log_fd)
    cgroups_before = cgroup_dirs()
    created_roots = {root for root in DEFAULT_ROOTS.values() if not root.exists()}
    try:
        rootfs = ctx.bundle("/bin/true") / "rootfs"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tmp / "rootfs.tar"), "."], check=True,
                       timeout=TIMEOUT)
        pm.import_image(ctx.runtimes[0].name, tmp / "rootfs.tar")
        yield pm
    finally:
        name = ctx.runtimes[0].name
        ids: list[str] = []
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            ids = pm(name, "ps", "--all", "--quiet", "--no-trunc").stdout.split()
            pm(name, "rm", "--all", "--force", "--time", "0")
        for rt in ctx.runtimes:
            forget(rt, ids, tmp, created_roots)
        remove_new_cgroups(cgroups_before)
        for point in mounts_under(tmp):
            subprocess.run(["umount", "-R", point], timeout=TIMEOUT, check=False)
        os.close(log_fd)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_podman(ctx: Context) -> list[Row]:
    """(f) the median `podman run --rm --network none IMAGE true`, podman driving each runtime."""
    n = ctx.n(10, 2)
    with podman_env(ctx) as pm:
        times: dict[str, list[float]] = {rt.name: [] for rt in ctx.runtimes}
        for rt in ctx.runtimes:  # warm-up
            pm.run_true(rt.name)
        for i in range(n):
            for rt in ctx.order(i):
                times[rt.name].append(pm.run_true(rt.name))
    return [median_row(f"podman run --rm --network none IMAGE true (median of {n})", times)]


if __name__ == "__main__":
    sys.exit(standalone(__doc__, [bench_podman]))
