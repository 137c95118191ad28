"""``ociruntime bundle create|delete|list``: an image becomes a bundle that runs (issue 9).

Images are built here by bundles/image.py (three layers over the busybox rootfs: a deletion, an
opaque directory, a hard link, a VOLUME, a user), in both archive forms, with no registry.  Each
test uses its own data root (``--store``), so the layer store, volumes and registry are removed
with the test's directory; every bundle is deleted by the ``bundles`` fixture before the leak
check looks for mounts.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Runtime, new_id, runtime_cmd

_spec = importlib.util.spec_from_file_location("bundles_image", REPO / "bundles" / "image.py")
assert _spec and _spec.loader
bundles_image = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bundles_image)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, rootfs_cache: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("images")
    return {fmt: bundles_image.build_image(tmp / f"{fmt}.tar", fmt, rootfs_cache=rootfs_cache)
            for fmt in ("oci-archive", "docker-archive")}


def cli(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [*runtime_cmd(), *(["--root", str(root)] if root else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


class Bundles:
    """``bundle create`` with this test's store; ``cleanup`` deletes whatever is left."""

    def __init__(self, tmp: Path, rt: Runtime) -> None:
        self.tmp = tmp
        self.rt = rt
        self.store = tmp / "store"
        self.made: list[Path] = []

    def create(self, image: Path | str, name: str, *extra: str, args: list[str] | None = None,
               check: bool = True) -> tuple[Path, subprocess.CompletedProcess]:
        d = self.tmp / name
        p = cli("bundle", "create", "--image", str(image), "--store", str(self.store), *extra, str(d),
                *(args or []), root=self.rt.root)
        if check:
            assert p.returncode == 0, p.stderr
        if p.returncode == 0:
            self.made.append(d)
        return d, p

    def delete(self, d: Path, check: bool = True) -> subprocess.CompletedProcess:
        p = cli("bundle", "delete", "--store", str(self.store), str(d), root=self.rt.root)
        if check:
            assert p.returncode == 0, p.stderr
            self.made.remove(d)
        return p

    def run(self, d: Path) -> subprocess.CompletedProcess:
        cid = new_id("img")
        p = self.rt("run", "--bundle", str(d), cid)
        self.rt("delete", "--force", cid)
        return p

    def cleanup(self) -> None:
        for d in list(self.made):
            self.delete(d, check=False)


@pytest.fixture
def bundles(tmp_path: Path, rt: Runtime) -> Iterator[Bundles]:
    b = Bundles(tmp_path, rt)
    yield b
    b.cleanup()


def mountinfo_under(path: Path) -> list[list[str]]:
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == real or fields[4].startswith(real + "/"):
                out.append(fields)
    return out


def snapshot(root: Path) -> dict[str, tuple]:
    """What a container sees of a tree: kinds, modes, owners, contents, link targets, hard links."""
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(p.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    extra = (extra, inodes.setdefault((st.st_dev, st.st_ino), rel))
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


SCRIPT = ("cat /srv/www/index.html; test -e /opt/old || echo old-gone; ls /opt/keep; "
          "cat /usr/share/demo/b; id; pwd; echo DEMO=$DEMO; cat /var/data/seed; cat /etc/motd")


def test_overlay_bundle_runs_the_image(bundles: Bundles, images: dict[str, Path]) -> None:
    d, _ = bundles.create(images["oci-archive"], "web", args=["sh", "-c", SCRIPT])
    layers = sorted(p.name for p in (bundles.store / "layers").iterdir() if not p.name.startswith("."))
    assert len(layers) == 3
    mounts = mountinfo_under(d / "rootfs")
    assert len(mounts) == 1 and mounts[0][mounts[0].index("-") + 1] == "overlay", mounts
    p = bundles.run(d)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "hello from an ociruntime bundle" in out
    assert "old-gone" in out                          # deleted by a whiteout in layer 2
    assert out.split("\n")[2] == "b"                  # /opt/keep is opaque in layer 2: no "a"
    assert "one inode, two names" in out              # the hard link
    assert "uid=1500(app) gid=1500(app) groups=2000(web)" in out  # User resolved
    assert "/srv/www\n" in out                        # WorkingDir
    assert "DEMO=1" in out
    assert "seeded from the image" in out             # anonymous volume seeded
    config = json.loads((d / "config.json").read_text())
    assert config["annotations"]["org.example.demo"] == "yes"
    assert config["hostname"] == "web"
    # the container wrote its own layer only
    assert (d / "upper").is_dir()


def test_two_bundles_share_the_layer_store(bundles: Bundles, images: dict[str, Path]) -> None:
    d1, _ = bundles.create(images["oci-archive"], "one")
    store = bundles.store / "layers"
    first = {p.name: (p / "layer.json").stat().st_ino for p in store.iterdir() if not p.name.startswith(".")}
    d2, _ = bundles.create(images["docker-archive"], "two")  # same layers, the other format
    second = {p.name: (p / "layer.json").stat().st_ino for p in store.iterdir() if not p.name.startswith(".")}
    assert first == second and len(first) == 3        # nothing extracted again
    lowers = [f[-1] for f in mountinfo_under(d1 / "rootfs") + mountinfo_under(d2 / "rootfs")]
    assert len(lowers) == 2 and all(str(store) in opts for opts in lowers)
    listed = json.loads(cli("bundle", "list", "--store", str(bundles.store), "--format", "json").stdout)
    assert sorted(b["name"] for b in listed) == ["one", "two"] and all(b["ready"] for b in listed)
    table = cli("bundle", "list", "--store", str(bundles.store)).stdout
    assert "NAME" in table and str(d1) in table


def test_delete_leaves_no_mount_and_no_files(bundles: Bundles, images: dict[str, Path]) -> None:
    d, _ = bundles.create(images["oci-archive"], "gone", "--volume", f"keep-{d_name()}:/srv/www")
    assert mountinfo_under(d)
    bundles.delete(d)
    assert not mountinfo_under(d)
    assert not d.exists()
    assert cli("bundle", "list", "--store", str(bundles.store), "-q").stdout == ""
    assert any((bundles.store / "layers").iterdir())  # the shared store stays
    assert (bundles.store / "volumes").is_dir() and any((bundles.store / "volumes").iterdir())


def d_name() -> str:
    return new_id("v")


def test_copy_and_overlay_and_both_formats_give_one_rootfs(bundles: Bundles, images: dict[str, Path]) -> None:
    ov, _ = bundles.create(images["oci-archive"], "ov")
    cp, _ = bundles.create(images["docker-archive"], "cp", "--copy")
    assert not mountinfo_under(cp)
    a, b = snapshot(ov / "rootfs"), snapshot(cp / "rootfs")
    assert a == b
    assert "opt/old" not in a and "opt/keep/a" not in a and "opt/keep/b" in a
    p = bundles.run(cp)
    assert p.returncode == 0, p.stderr


def test_volumes_named_bind_tmpfs(bundles: Bundles, images: dict[str, Path], tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("from the host\n")
    vol = d_name()
    script = ("cat /www/index.html; echo written > /www/new; cat /h/f; touch /h/x 2>/dev/null || echo ro; "
              "grep ' /scratch ' /proc/mounts | cut -d' ' -f3; ls -ln /var/data")
    d, _ = bundles.create(images["oci-archive"], "vols", "--volume", f"{vol}:/www", "--bind", f"{host}:/h:ro",
                          "--tmpfs", "/scratch", "--user", "0", args=["sh", "-c", script])
    p = bundles.run(d)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "hello from an ociruntime bundle" not in out   # /www is empty in the image: nothing seeded
    assert "from the host" in out and "ro" in out.split("\n")
    assert "tmpfs" in out
    assert "1500" in out                                  # the anonymous volume kept the owner
    data = bundles.store / "volumes" / vol / "_data"
    assert (data / "new").read_text() == "written\n"
    # the named volume outlives its bundle, and a second bundle sees what the first wrote
    bundles.delete(d)
    d2, _ = bundles.create(images["oci-archive"], "vols2", "--volume", f"{vol}:/www",
                           args=["cat", "/www/new"])
    p = bundles.run(d2)
    assert p.stdout.decode() == "written\n"


def test_named_volume_is_seeded_from_the_image(bundles: Bundles, images: dict[str, Path]) -> None:
    vol = d_name()
    d, _ = bundles.create(images["oci-archive"], "seed", "--volume", f"{vol}:/srv/www",
                          args=["cat", "/srv/www/index.html"])
    assert (bundles.store / "volumes" / vol / "_data" / "index.html").exists()
    p = bundles.run(d)
    assert "hello from an ociruntime bundle" in p.stdout.decode()


def _corrupt_layout(src: Path, dest: Path) -> Path:
    """The oci-archive unpacked, with one byte of its middle layer blob changed."""
    with tarfile.open(src) as t:
        t.extractall(dest)
    manifest_desc = json.loads((dest / "index.json").read_text())["manifests"][0]
    manifest = json.loads((dest / "blobs/sha256" / manifest_desc["digest"][7:]).read_text())
    blob = dest / "blobs/sha256" / manifest["layers"][1]["digest"][7:]
    data = bytearray(gzip.decompress(blob.read_bytes()))
    data[600] ^= 1
    blob.write_bytes(gzip.compress(bytes(data), mtime=0))  # a valid gzip of the wrong content
    return dest


def test_corrupt_image_is_refused_and_leaves_nothing(bundles: Bundles, images: dict[str, Path],
                                                     tmp_path: Path) -> None:
    bad = _corrupt_layout(images["oci-archive"], tmp_path / "bad-layout")
    d, p = bundles.create(bad, "bad", check=False)
    assert p.returncode != 0
    assert len(p.stderr.strip().splitlines()) == 1 and "layer 1" in p.stderr, p.stderr
    assert not d.exists() and not mountinfo_under(tmp_path)
    layers = bundles.store / "layers"
    assert not [n for n in os.listdir(layers / ".tmp")]
    # the good base layer stayed (it is verified and shared); the bad one is not published
    assert len([n for n in os.listdir(layers) if not n.startswith(".")]) == 1


def test_bad_arguments_leave_nothing(bundles: Bundles, images: dict[str, Path], tmp_path: Path) -> None:
    for extra in (["--net", "bogus"], ["--volume", "x:relative"], ["--user", "nosuchuser"],
                  ["--bind", "/nonexistent-path:/x"]):
        d, p = bundles.create(images["oci-archive"], "argfail", *extra, check=False)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, (extra, p.stderr)
        assert not d.exists() and not mountinfo_under(tmp_path), extra
    p = cli("bundle", "create", str(tmp_path / "x"))
    assert p.returncode != 0 and "--image" in p.stderr
    p = cli("bundle", "delete", str(tmp_path))
    assert p.returncode != 0 and "bundle.json" in p.stderr


def test_delete_refused_while_a_container_uses_it(bundles: Bundles, images: dict[str, Path]) -> None:
    d, _ = bundles.create(images["oci-archive"], "busy", args=["sleep", "100"])
    cid = new_id("busy")
    bundles.rt("create", "--bundle", str(d), cid, check=True)
    try:
        p = bundles.delete(d, check=False)
        assert p.returncode != 0 and cid in p.stderr
        assert mountinfo_under(d / "rootfs")
    finally:
        bundles.rt("delete", "--force", cid)
    bundles.delete(d)


def test_a_long_layer_stack_mounts_through_short_links(bundles: Bundles, images: dict[str, Path],
                                                       tmp_path: Path) -> None:
    base = bundles_image.demo_layers()[0]
    layers = [base] + [bundles_image.LayerTar().dir("l").file(f"l/{i}", f"{i}\n".encode()).bytes()
                       for i in range(1, 60)]
    image = bundles_image.oci_archive(tmp_path / "tall.tar", layers, {
        "architecture": bundles_image.demo_config(layers)["architecture"], "os": "linux",
        "config": {"Cmd": ["sh", "-c", "ls /l | wc -l"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
    }, "tall")
    d, _ = bundles.create(image, "tall")
    assert (d / "lower").is_dir()
    p = bundles.run(d)
    assert p.stdout.decode().strip() == "59", p.stderr


def test_entrypoint_env_workdir_overrides(bundles: Bundles, images: dict[str, Path]) -> None:
    d, _ = bundles.create(images["oci-archive"], "ovr", "--entrypoint", "/bin/sh", "--env", "DEMO=2",
                          "--workdir", "/opt", "--user", "nobody", args=["-c", "echo $DEMO; pwd; id -u"])
    p = bundles.run(d)
    assert p.stdout.decode().split() == ["2", "/opt", "65534"], p.stderr


def test_image_by_name_from_a_layout_dir(bundles: Bundles, images: dict[str, Path], tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with tarfile.open(images["oci-archive"]) as t:
        t.extractall(layout)
    d, _ = bundles.create(f"{layout}:localhost/ociruntime-demo:latest", "named", args=["true"])
    meta = json.loads((d / "bundle.json").read_text())
    assert meta["image"]["name"].endswith("ociruntime-demo:latest")
    _, p = bundles.create(f"{layout}:nosuch:tag", "nosuch", check=False)
    assert p.returncode != 0 and "nosuch" in p.stderr


_ = (io, shutil)


def test_bundles_on_one_bridge_from_end_to_end(bundles: Bundles, images: dict[str, Path], tmp_path: Path,
                                               bundle) -> None:
    """`bundle create --net bridge` twice and `--net container:ID`: the containers reach each other
    and the bridge address; after delete no veth, lease or mount is left.  In a holder netns."""
    from test_network import HostNs

    host = HostNs(tmp_path, bundle)
    try:
        web, _ = bundles.create(images["oci-archive"], "web", "--net", "bridge",
                                args=["httpd", "-f", "-p", "8080", "-h", "/srv/www"])
        web_id = host.run(web)
        web_ip = next(line.split()[0] for line in (web / "hosts").read_text().splitlines()
                      if line.split()[1:2] == ["web"] and not line.startswith("127."))
        client, _ = bundles.create(images["oci-archive"], "client", "--net", "bridge", "--user", "0",
                                   args=["sleep", "1000"])
        client_id = host.run(client)
        assert "hello from an ociruntime bundle" in host.exec(client_id, "wget", "-qO-", f"http://{web_ip}:8080/")
        gateway = host.exec(client_id, "ip", "route").split("default via ")[1].split()[0]
        assert gateway in host.sh("ip", "-4", "addr", "show", "oci0")
        host.exec(client_id, "ping", "-c1", "-W2", gateway)
        host.exec(client_id, "ping", "-c1", "-W2", web_ip)
        shared, _ = bundles.create(images["oci-archive"], "shared", "--net", f"container:{web_id}",
                                   args=["sleep", "1000"])
        shared_id = host.run(shared)
        assert f"inet {web_ip}/" in host.exec(shared_id, "ip", "-4", "addr", "show", "eth0")
        for cid in (shared_id, client_id, web_id):
            host.delete(cid)
        for d in (shared, client, web):
            host.rt("bundle", "delete", "--store", str(bundles.store), str(d))
            bundles.made.remove(d)
        assert [n for n in host.links() if n not in ("lo", "oci0")] == []
        assert host.leases() == {}
        assert not mountinfo_under(tmp_path)
    finally:
        host.close()


def test_demo_net_runs_clean(tmp_path: Path) -> None:
    """`make demo-net`'s script: image -> two bundles -> web and client on a bridge, then nothing left."""
    cmd = runtime_cmd()
    if len(cmd) != 1:
        pytest.skip("the network hooks need an installed runtime: set OCIRUNTIME")
    p = subprocess.run(["/usr/bin/python3", str(REPO / "bundles" / "demo_net.py"), "--runtime", cmd[0],
                        "--work", str(tmp_path / "demo")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "hello from an ociruntime bundle" in p.stdout and "ping 10.89.0.1 ok" in p.stdout
    assert "mounts left under" in p.stdout and p.stdout.rstrip().endswith(": 0")


def test_mount_again_after_an_unmount_keeps_the_container_layer(bundles: Bundles,
                                                                 images: dict[str, Path]) -> None:
    """As after a reboot: the overlay is gone, `bundle mount` stacks the same layers on the same
    upper directory, so what the container wrote is still there and deletions stay deleted."""
    d, _ = bundles.create(images["oci-archive"], "again", "--user", "0",
                          args=["sh", "-c", "echo kept > /root/note; rm /etc/motd"])
    assert bundles.run(d).returncode == 0
    subprocess.run(["umount", str(d / "rootfs")], check=True)
    listed = json.loads(cli("bundle", "list", "--store", str(bundles.store), "--format", "json").stdout)
    assert [b["ready"] for b in listed] == [False]
    p = cli("bundle", "mount", str(d))
    assert p.returncode == 0, p.stderr
    assert (d / "rootfs" / "root" / "note").read_text() == "kept\n"
    assert not (d / "rootfs" / "etc" / "motd").exists() and (d / "rootfs" / "bin" / "busybox").exists()
    assert cli("bundle", "mount", str(d)).returncode == 0          # mounted already: nothing to do
    assert len(mountinfo_under(d)) == 1


def test_delete_never_removes_through_a_mount(bundles: Bundles, images: dict[str, Path],
                                              tmp_path: Path) -> None:
    """Something mounted inside the bundle (here a bind of a directory with a precious file on the
    anonymous volume) makes delete refuse before it changes anything: rmtree would cross into it."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep").write_text("do not delete\n")
    d, _ = bundles.create(images["oci-archive"], "guarded")
    target = d / "volumes" / "0"
    subprocess.run(["mount", "--bind", str(precious), str(target)], check=True)
    try:
        p = bundles.delete(d, check=False)
        assert p.returncode != 0 and "is a mount point" in p.stderr, p.stderr
        assert (precious / "keep").exists() and (d / "config.json").exists()
        assert len(mountinfo_under(d / "rootfs")) == 1
    finally:
        subprocess.run(["umount", str(target)], check=True)
    bundles.delete(d)
    assert (precious / "keep").read_text() == "do not delete\n"


def test_delete_cleans_up_after_a_killed_create(bundles: Bundles, images: dict[str, Path]) -> None:
    """A create killed after its mount (no undo runs) leaves a provisional bundle.json, so `bundle
    delete` still removes the mount and the files."""
    d = bundles.tmp / "killed"
    script = ("import os, sys\nfrom ociruntime.image import bundle as b\n"
              "b._config = lambda *a, **k: os._exit(9)\n"
              "b.create(b.CreateOptions(image=sys.argv[1], directory=sys.argv[2], store=sys.argv[3], "
              "runtime='/bin/false', state_root=sys.argv[4]))\n")
    p = subprocess.run([sys.executable, "-c", script, str(images["oci-archive"]), str(d), str(bundles.store),
                        str(bundles.rt.root)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 9, p.stderr
    assert len(mountinfo_under(d)) == 1 and json.loads((d / "bundle.json").read_text())["incomplete"]
    assert "never finished" in cli("bundle", "mount", str(d)).stderr
    bundles.made.append(d)
    bundles.delete(d)
    assert not mountinfo_under(d) and not d.exists()
