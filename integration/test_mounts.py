"""Mount set-up seen from inside and outside real containers: containers without a mount
namespace, read-only mounts with mounts beneath, tmpfs modes, proc destinations, bind sources
in user namespaces."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import bundles_build, new_id
from test_bad_input import assert_clean_failure

pytestmark = pytest.mark.root


def _mountinfo() -> list[tuple[int, str, str]]:
    """(mount id, mount point, optional fields) of every mount in our namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.append((int(fields[0]), fields[4], " ".join(fields[6:sep])))
    return out


def mounts_beneath(path: Path) -> list[str]:
    top = str(path).rstrip("/") + "/"
    return [mp for _, mp, _ in _mountinfo() if mp.startswith(top)]


def no_mntns(cfg: dict) -> None:
    """The default config without a mount namespace (and without the masks that then need one)."""
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    cfg["linux"].pop("maskedPaths", None)
    cfg["linux"].pop("readonlyPaths", None)


def _data_dir(tmp_path: Path) -> Path:
    src = tmp_path / "data"
    src.mkdir()
    (src / "file").write_text("hostdata")
    return src


def _with_data(src: Path):
    def mutate(cfg: dict) -> None:
        no_mntns(cfg)
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                              "options": ["rbind", "ro"]})
    return mutate


# ---- no mount namespace -----------------------------------------------------------------------

def test_no_mntns_runs_in_host_namespace(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["checker", "report"], _with_data(_data_dir(tmp_path)))
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads(p.stdout)
    assert r["ns"]["mnt"] == os.stat("/proc/self/ns/mnt").st_ino
    assert r["cwd"] == "/"
    # chroot: the container's mountinfo shows only what is beneath its root, as "/..."
    points = {line.split()[4] for line in r["mountinfo"].splitlines()}
    assert {"/proc", "/dev", "/dev/pts", "/sys", "/data"} <= points
    # `run` deleted the container: none of its mounts is left on the host
    assert mounts_beneath(b / "rootfs") == []


def test_no_mntns_sees_rootfs_and_config_mounts(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["checker", "read", "/marker", "/data/file", "/proc/self/comm"],
               _with_data(_data_dir(tmp_path)))
    (b / "rootfs" / "marker").write_text("inside")
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads(p.stdout)
    assert r == {"/marker": "inside", "/data/file": "hostdata", "/proc/self/comm": "checker\n"}
    assert mounts_beneath(b / "rootfs") == []


def test_no_mntns_delete_removes_only_its_mounts(rt, bundle, tmp_path: Path) -> None:
    b = bundle(["sleep", "100"], _with_data(_data_dir(tmp_path)))
    rootfs = b / "rootfs"
    # A mount that was beneath the rootfs before create is not the container's to remove.
    premounted = rootfs / "premounted"
    premounted.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "pre", str(premounted)], check=True)
    cid = new_id()
    try:
        rt("create", "--bundle", str(b), cid, check=True)
        during = mounts_beneath(rootfs)
        assert {str(rootfs / "proc"), str(rootfs / "dev"), str(rootfs / "data")} <= set(during)
        rt("start", cid, check=True)
        rt("delete", "--force", cid, check=True)
        assert mounts_beneath(rootfs) == [str(premounted)]
    finally:
        subprocess.run(["umount", str(premounted)], check=False)


def test_no_mntns_failed_create_leaves_no_mount(rt, bundle, tmp_path: Path) -> None:
    # the executable is looked up after every mount exists
    b = bundle(["/nonexistent"], _with_data(_data_dir(tmp_path)))
    p = rt("create", "--bundle", str(b), new_id())
    assert p.returncode != 0 and b"/nonexistent" in p.stderr
    assert mounts_beneath(b / "rootfs") == []


def test_no_mntns_host_propagation_unchanged(rt, bundle, tmp_path: Path, checker: Path) -> None:
    """Neither "/" (made rslave with a namespace) nor the rootfs' parent (made private) change."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "shared", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        b = shared / "bundle"
        cfg_path = bundles_build.build_bundle(b, checker=checker, args=["true"], rootfs_cache=bundle.cache)
        cfg = json.loads(Path(cfg_path).read_text())
        no_mntns(cfg)
        Path(cfg_path).write_text(json.dumps(cfg))
        before = {mid: opt for mid, _, opt in _mountinfo()}
        assert "shared:" in before[next(mid for mid, mp, _ in _mountinfo() if mp == str(shared))]
        p = rt("run", "--bundle", str(b), new_id())
        assert p.returncode == 0, p.stderr.decode()
        after = {mid: opt for mid, _, opt in _mountinfo()}
        # mounts of other tests may come and go meanwhile; ours and the host's must not change
        changed = {mid: (before[mid], after[mid]) for mid in before.keys() & after.keys()
                   if before[mid] != after[mid]}
        assert changed == {}
        assert mounts_beneath(b / "rootfs") == []
    finally:
        subprocess.run(["umount", "-l", str(shared)], check=False)


def test_no_mntns_masked_paths_refused(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]

    p = rt("create", "--bundle", str(bundle(["true"], mutate)), new_id())
    assert_clean_failure(p, rt, "unable to restrict sys entries without a private MNT namespace")


# ---- read-only mounts with mounts beneath ---------------------------------------------------

def _ro_dev(cfg: dict) -> None:
    for mnt in cfg["mounts"]:
        if mnt["destination"] == "/dev":
            mnt["options"].append("ro")


def _run_json(rt, bundle, args: list[str], mutate) -> dict:
    p = rt("run", "--bundle", str(bundle(["checker", *args], mutate)), new_id())
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_readonly_dev_tmpfs(rt, bundle) -> None:
    r = _run_json(rt, bundle, ["stat", "/dev/null", "/dev/zero", "/dev/tty", "/dev/ptmx", "/dev/pts/ptmx",
                               "/dev/shm", "/dev/fd"], _ro_dev)
    assert r["/dev/null"]["type"] == "chr" and (r["/dev/null"]["major"], r["/dev/null"]["minor"]) == (1, 3)
    assert r["/dev/zero"]["type"] == "chr" and r["/dev/tty"]["type"] == "chr"
    assert r["/dev/ptmx"]["type"] == "lnk" and r["/dev/fd"]["type"] == "lnk"
    assert r["/dev/pts/ptmx"]["type"] == "chr" and r["/dev/shm"]["type"] == "dir"
    r = _run_json(rt, bundle, ["report"], _ro_dev)
    dev = next(line.split() for line in r["mountinfo"].splitlines() if line.split()[4] == "/dev")
    assert dev[5].split(",")[0] == "ro" and "nosuid" in dev[5]
    r = _run_json(rt, bundle, ["write", "/dev/newfile", "x"], _ro_dev)
    assert r["errno"] == 30  # EROFS
    r = _run_json(rt, bundle, ["write", "/dev/null", "x"], _ro_dev)
    assert r["errno"] == 0  # the nodes still work


# ---- tmpfs mode -------------------------------------------------------------------------------

def test_tmpfs_keeps_mode_of_covered_directory(rt, bundle) -> None:
    def mutate(cfg: dict) -> None:
        tmpfs = {"type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        cfg["mounts"] += [{**tmpfs, "destination": "/tmp"},  # 1777 in the image
                          {**tmpfs, "destination": "/srv"},  # 2755, set below
                          {**tmpfs, "destination": "/var/tmp", "options": ["mode=0700"]}]

    b = bundle(["checker", "stat", "/tmp", "/srv", "/var/tmp"], mutate)
    (b / "rootfs" / "srv").mkdir()
    (b / "rootfs" / "srv").chmod(0o2755)
    assert (b / "rootfs" / "var" / "tmp").stat().st_mode & 0o7777 == 0o1777
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads(p.stdout)
    modes = {k: v["mode"] & 0o7777 for k, v in r.items()}
    assert modes == {"/tmp": 0o1777, "/srv": 0o2755, "/var/tmp": 0o700}


# ---- proc destination -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["symlink-out", "symlink-in", "file"])
def test_proc_on_non_directory_refused(rt, bundle, kind: str) -> None:
    b = bundle(["true"])
    proc = b / "rootfs" / "proc"
    proc.rmdir()
    if kind == "symlink-out":
        proc.symlink_to("/x")
    elif kind == "symlink-in":
        proc.symlink_to("sys")
    else:
        proc.write_text("")
    p = rt("run", "--bundle", str(b), new_id())
    assert_clean_failure(p, rt, 'filesystem "proc" must be mounted on ordinary directory')
    assert not (b / "rootfs" / "x").exists()
    assert mounts_beneath(b / "rootfs") == []


# ---- bind sources and user namespaces ---------------------------------------------------------

@pytest.fixture
def open_base(tmp_path: Path):
    """A 0755 base: the container's mapped root (host uid 100000) must reach its rootfs, which
    pytest's private (0700) temporary directory would not allow."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ociruntime-mnt-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _userns(extra_mounts: list[dict]):
    def mutate(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["mounts"] += extra_mounts
    return mutate


def _with_mountpoints(b: Path) -> Path:
    """The rootfs belongs to the host's root: the mapped root cannot make mount points in it."""
    for d in ("data", "private", "shared"):
        (b / "rootfs" / d).mkdir()
    (b / "rootfs" / "etc" / "single").write_text("")
    return b


def test_bind_source_only_host_root_can_reach(rt, bundle, open_base: Path) -> None:
    bundle.base = open_base
    hidden = open_base / "hidden"  # root's 0700: no lookup below it from the user namespace
    hidden.mkdir(mode=0o700)
    data = hidden / "data"
    data.mkdir()
    data.chmod(0o755)
    (data / "file").write_text("behind 0700")
    (data / "file").chmod(0o644)
    single = hidden / "single"
    single.write_text("one file")
    single.chmod(0o644)
    private = hidden / "private"  # itself 0700: mounted, its content stays root's
    private.mkdir(mode=0o700)
    mounts = [{"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]},
              {"destination": "/etc/single", "type": "bind", "source": str(single), "options": ["bind"]},
              {"destination": "/private", "type": "bind", "source": str(private), "options": ["bind"]}]
    b = _with_mountpoints(bundle(["checker", "read", "/data/file", "/etc/single"], _userns(mounts)))
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout) == {"/data/file": "behind 0700", "/etc/single": "one file"}
    b = _with_mountpoints(bundle(["checker", "stat", "/private", "/data"], _userns(mounts)))
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads(p.stdout)
    assert r["/private"]["type"] == "dir" and r["/private"]["mode"] & 0o777 == 0o700
    assert r["/data"]["type"] == "dir"


def test_bind_clone_does_not_propagate_to_host(rt, bundle, open_base: Path) -> None:
    """The attached clone of a shared host mount is a slave: nothing flows back to the host."""
    bundle.base = open_base
    hidden = open_base / "hidden"
    hidden.mkdir(mode=0o700)
    shared = hidden / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "shr", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        (shared / "sub").mkdir()
        mounts = [{"destination": "/shared", "type": "bind", "source": str(shared), "options": ["rbind"]},
                  {"destination": "/shared/sub", "type": "tmpfs", "source": "tmpfs"}]
        b = _with_mountpoints(bundle(["checker", "stat", "/shared/sub"], _userns(mounts)))
        p = rt("run", "--bundle", str(b), new_id())
        assert p.returncode == 0, p.stderr.decode()
        assert mounts_beneath(shared) == []
    finally:
        subprocess.run(["umount", "-l", str(shared)], check=False)
