"""Copy-mode flattening: the copy is exactly what a real overlay mount of the same diffs shows,
nothing is ever written through a symlink an image put in dest; and copy_tree (volume seeding)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from forked import run_in_child
from imagebuild import MTIME, T, oci_layout, sample_layers, snapshot

from ociruntime.errors import ImageError
from ociruntime.image.flatten import copy_tree, flatten, visible_layers
from ociruntime.image.source import open_image
from ociruntime.image.store import LayerStore
from ociruntime.linux import mount as m

ROOT = os.geteuid() == 0


def _overlay_usable() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


needs_root = pytest.mark.skipif(not ROOT, reason="needs root")
needs_overlay = pytest.mark.skipif(not (ROOT and _overlay_usable()), reason="needs root and overlayfs")


def build(tmp_path: Path, layers: list[bytes], privileged: bool | None = None,
          name: str = "img") -> list[tuple[str, list[dict]]]:
    """Real diffs: an OCI layout of the layer tars, extracted by the layer store."""
    layout = oci_layout(tmp_path / f"{name}-layout", layers)
    store = LayerStore(tmp_path / f"{name}-store", privileged=privileged, durable=False)
    with open_image(layout) as img:
        diffs = store.ensure_layers(img)
        return [(str(d), store.whiteouts(c)) for d, c in zip(diffs, img.chain_ids, strict=True)]


def tree(root: Path) -> dict[str, str]:
    """snapshot() as comparable text, plus directory mtimes (the upper directory's wins)."""
    out = {k: repr(v) for k, v in snapshot(root, skip_vanished=True).items()}
    for dirpath, dirs, _ in os.walk(root):
        for d in dirs:
            p = Path(dirpath) / d
            out[f"{p.relative_to(root)}/"] = repr(p.lstat().st_mtime_ns)
    out["."] = repr((stat.filemode(root.lstat().st_mode), root.lstat().st_uid, root.lstat().st_gid))
    return out


def overlay_tree(tmp_path: Path, layers: list[tuple[str, list[dict]]]) -> dict[str, str]:
    """tree() of a read-only overlay of the layers, mounted in a private mount namespace of a
    forked child.  An empty bottom layer makes two lowers at least (no upper needed)."""
    empty = tmp_path / "ovl-empty"
    mnt = tmp_path / "ovl-mnt"
    empty.mkdir(exist_ok=True)
    mnt.mkdir(exist_ok=True)
    lowers = ":".join([d for d, _ in reversed(layers)] + [str(empty)])

    def body() -> dict[str, str]:
        m.mount("overlay", str(mnt), "overlay", m.MS_RDONLY, f"lowerdir={lowers}")
        try:
            return tree(mnt)
        finally:
            m.umount2(str(mnt))

    result = run_in_child(body)
    assert isinstance(result, dict)
    return result


def flat(tmp_path: Path, layers: list[tuple[str, list[dict]]], name: str = "rootfs") -> Path:
    dest = tmp_path / name
    dest.mkdir()
    flatten(layers, str(dest))
    return dest


def check_like_overlay(tmp_path: Path, tars: list[bytes]) -> Path:
    layers = build(tmp_path, tars)
    dest = flat(tmp_path, layers)
    got = tree(dest)
    assert got == overlay_tree(tmp_path, visible_layers(layers))
    return dest


# -- the same view as overlayfs --

@needs_overlay
def test_sample_layers_like_overlay(tmp_path) -> None:
    dest = check_like_overlay(tmp_path, sample_layers())
    assert not (dest / "del/me").exists() and (dest / "del/stays").exists()
    assert sorted(os.listdir(dest / "opt/data")) == ["c"]
    assert (dest / "etc/hosts").read_bytes().endswith(b"::1 localhost\n")
    assert stat.S_IMODE((dest / "bin/sh").stat().st_mode) == 0o4755
    assert (dest / "bin/sh").stat().st_ino == (dest / "bin/ls").stat().st_ino
    assert os.getxattr(dest / "etc/attr", "user.test") == b"yes"
    assert not [k for k in os.listxattr(dest / "opt/data") if "overlay" in k]
    st = (dest / "keep/owned").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o640)


@needs_overlay
def test_types_replaced_both_ways_like_overlay(tmp_path) -> None:
    l0 = (T().dir("a").file("a/x", b"x").dir("a/sub").file("a/sub/y", b"y")
          .file("b", b"file b").dir("s").file("s/f", b"f").symlink("t", "a")
          .dir("m", 0o700, 5, 5).file("m/old", b"old").dir("ro", 0o555).file("ro/f", b"f")
          .file("pipe-later", b"p").chardev("dev", 1, 3).fifo("fifo").bytes())
    l1 = (T().file("a", b"now a file").dir("b").file("b/c", b"c").symlink("s", "a")
          .dir("t").file("t/q", b"q").dir("m", 0o751, 7, 8).file("m/new", b"new")
          .dir("ro", 0o555).file("ro/g", b"g").fifo("pipe-later").file("dev", b"no longer a device").bytes())
    l2 = (T().dir("a").file("a/z", b"z").file("b", b"file again").dir("s").file("s/g", b"g").bytes())
    dest = check_like_overlay(tmp_path, [l0, l1, l2])
    assert sorted(os.listdir(dest / "a")) == ["z"]  # the file in between hid l0's directory
    assert (dest / "b").read_bytes() == b"file again"
    assert sorted(os.listdir(dest / "s")) == ["g"] and not (dest / "s").is_symlink()
    assert sorted(os.listdir(dest / "t")) == ["q"]
    assert sorted(os.listdir(dest / "m")) == ["new", "old"]
    st = (dest / "m").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o751)
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    assert sorted(os.listdir(dest / "ro")) == ["f", "g"]
    assert stat.S_ISFIFO((dest / "pipe-later").lstat().st_mode)


@needs_overlay
def test_opaque_at_several_depths_like_overlay(tmp_path) -> None:
    l0 = (T().dir("p").file("p/f2", b"2").dir("p/q").file("p/q/f3", b"3").dir("p/q/r").file("p/q/r/f1", b"1")
          .dir("o").file("o/gone", b"g").bytes())
    l1 = (T().dir("p/q").file("p/q/.wh..wh..opq").file("p/q/new", b"n").dir("p/q/r").file("p/q/r/l1", b"l1")
          .file("o/.wh..wh..opq").bytes())
    l2 = (T().dir("p").file("p/.wh..wh..opq").dir("p/q").file("p/q/top", b"t").dir("o").file("o/back", b"b")
          .bytes())
    l3 = T().dir("p/q").file("p/q/r", b"r is a file").bytes()
    dest = check_like_overlay(tmp_path, [l0, l1, l2])
    assert sorted(os.listdir(dest / "p")) == ["q"] and sorted(os.listdir(dest / "p/q")) == ["top"]
    assert sorted(os.listdir(dest / "o")) == ["back"]
    (tmp_path / "file-below").mkdir()
    dest = check_like_overlay(tmp_path / "file-below", [l0, l1, l3])
    assert sorted(os.listdir(dest / "p/q")) == ["new", "r"] and (dest / "p/q/r").is_file()
    assert sorted(os.listdir(dest / "p")) == ["f2", "q"]


@needs_overlay
def test_root_opaque_hides_every_lower_layer(tmp_path) -> None:
    l0 = T().dir("etc").file("etc/passwd", b"old").file("gone", b"g").bytes()
    l1 = T().file("mid", b"m").bytes()
    l2 = T().file(".wh..wh..opq").dir("etc").file("etc/hosts", b"new").bytes()
    l3 = T().file("top", b"t").bytes()
    layers = build(tmp_path, [l0, l1, l2, l3])
    assert visible_layers(layers) == layers[2:]
    dest = flat(tmp_path, layers)
    assert sorted(os.listdir(dest)) == ["etc", "top"] and os.listdir(dest / "etc") == ["hosts"]
    assert tree(dest) == overlay_tree(tmp_path, visible_layers(layers))


@needs_overlay
def test_delete_then_readd_in_one_layer_like_overlay(tmp_path) -> None:
    l0 = (T().dir("d").file("d/lower", b"l").file("f", b"old").file("g", b"old g").dir("e").file("e/x", b"x")
          .bytes())
    # f: whiteout then a new file; d: whiteout then a directory again (overlayfs merges it with
    # the lower d: no opaque xattr); g: a file then its whiteout (gone); e: removed whole
    l1 = (T().file(".wh.f").file("f", b"new").file(".wh.d").dir("d").file("d/upper", b"u")
          .file("g", b"upper g").file(".wh.g").file(".wh.e").bytes())
    dest = check_like_overlay(tmp_path, [l0, l1])
    assert (dest / "f").read_bytes() == b"new"
    assert not (dest / "g").exists() and not (dest / "e").exists()
    assert sorted(os.listdir(dest / "d")) == ["lower", "upper"]


@needs_overlay
def test_hard_links_within_a_layer(tmp_path) -> None:
    l0 = (T().file("h1", b"data", mode=0o4750, uid=3).hardlink("h2", "h1").dir("x").hardlink("x/h3", "h1")
          .file("solo", b"s").bytes())
    l1 = (T().file("h2", b"replaced").file("n1", b"n").dir("y").hardlink("y/n2", "n1").symlink("sl", "h1")
          .hardlink("sl2", "sl").bytes())
    dest = check_like_overlay(tmp_path, [l0, l1])
    ino = lambda p: (dest / p).lstat().st_ino  # noqa: E731
    assert ino("h1") == ino("x/h3") != ino("h2")
    assert (dest / "h1").stat().st_nlink == 2
    assert ino("n1") == ino("y/n2") and ino("sl") == ino("sl2")
    st = (dest / "x/h3").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o4750, 3)


@needs_overlay
def test_symlinks_in_dest_never_followed(tmp_path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "victim").write_bytes(b"keep me")
    (outside / "sub/victim2").write_bytes(b"keep me too")
    before = tree(outside)
    # the rootfs is tmp_path/rootfs: "../outside" from its root is outside too
    l0 = (T().symlink("etc", str(outside)).symlink("rel", "../outside").symlink("deep", "../../../../../..")
          .dir("d").symlink("d/s", str(outside / "sub")).symlink("w", str(outside)).symlink("o", str(outside))
          .symlink("victim-link", str(outside / "victim")).bytes())
    l1 = (T().dir("etc").file("etc/victim", b"pwned").file("rel/victim", b"pwned").dir("deep")
          .file(f"deep/{str(outside).lstrip('/')}/victim", b"pwned").file("d/s/victim2", b"pwned")
          .dir("w").file("w/.wh.victim").dir("o").file("o/.wh..wh..opq").file("victim-link", b"pwned")
          .bytes())
    l2 = T().dir("etc").file("etc/more", b"x").hardlink("etc/hl", "etc/more").bytes()
    dest = check_like_overlay(tmp_path, [l0, l1, l2])
    assert tree(outside) == before
    assert (dest / "etc/victim").read_bytes() == b"pwned" and not (dest / "etc").is_symlink()
    assert (dest / "victim-link").is_file() and not (dest / "victim-link").is_symlink()
    # the same with whiteouts recorded only (unprivileged extraction): walked, never followed
    layers = build(tmp_path, [l0, l1, l2], privileged=False, name="unpriv")
    assert not [w for _, ws in layers for w in ws if w["applied"]]
    flat(tmp_path, layers, "rootfs-unpriv")
    assert tree(outside) == before


@needs_overlay
def test_devices_fifos_xattrs_like_overlay(tmp_path) -> None:
    l0 = (T().chardev("dev/null", 1, 3).fifo("run/fifo").file("bin/ping", b"ping", mode=0o755,
          xattrs={"user.a": "1", "trusted.t": "2", "security.capability": "\x01\x00\x00\x02" + "\x00" * 16})
          .dir("x").file("x/f", b"f", xattrs={"user.keep": "k"}).bytes())
    l1 = T().dir("x").file("x/g", b"g").file("bin/.wh.gone").chardev("dev/zero", 1, 5).bytes()
    dest = check_like_overlay(tmp_path, [l0, l1])
    st = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert os.getxattr(dest / "bin/ping", "trusted.t") == b"2"
    assert not (dest / "bin/gone").exists()  # a whiteout of nothing: not copied as a device


# -- whiteouts from the list (extracted unprivileged: nothing applied in the diffs) --

@needs_overlay
def test_recorded_whiteouts_give_the_overlay_view(tmp_path) -> None:
    l0 = (T().dir("p").file("p/f2", b"2").dir("p/q").file("p/q/f3", b"3").dir("del").file("del/me", b"m")
          .file("del/stays", b"s").dir("gone").file("gone/x", b"x").file("f", b"old").bytes())
    l1 = (T().dir("p/q").file("p/q/.wh..wh..opq").file("p/q/new", b"n").dir("del").file("del/.wh.me")
          .file(".wh.gone").file(".wh.f").file("f", b"new").bytes())
    l2 = T().dir("p").file("p/.wh..wh..opq").file("p/top", b"t").dir("gone").file("gone/back", b"b").bytes()
    applied = build(tmp_path, [l0, l1, l2], name="priv")
    recorded = build(tmp_path, [l0, l1, l2], privileged=False, name="unpriv")
    assert [w for _, ws in applied for w in ws] and all(w["applied"] for _, ws in applied for w in ws)
    assert not [w for _, ws in recorded for w in ws if w["applied"]]
    want = overlay_tree(tmp_path, applied)
    assert tree(flat(tmp_path, recorded)) == want
    assert tree(flat(tmp_path, applied, "rootfs2")) == want


@needs_overlay
def test_the_diff_alone_is_read_as_overlayfs_reads_it(tmp_path) -> None:
    """Applied whiteouts need no list: 0/0 devices and opaque xattrs in the diff are enough."""
    l0 = T().dir("p").file("p/f", b"f").dir("p/q").file("p/q/g", b"g").file("x", b"x").bytes()
    l1 = T().dir("p").file("p/.wh..wh..opq").file("p/new", b"n").file(".wh.x").bytes()
    layers = build(tmp_path, [l0, l1])
    assert layers[1][1] and all(w["applied"] for w in layers[1][1])
    bare = [(d, []) for d, _ in layers]
    assert tree(flat(tmp_path, bare)) == overlay_tree(tmp_path, layers)


@needs_root
def test_unprivileged_same_tree_as_root(tmp_path) -> None:
    """Not root: no chown, read-only directories of a lower layer made writable for the upper
    ones (and their mode put back), /proc/self/fd paths for symlink xattrs still usable."""
    l0 = (T().dir("ro", 0o555).file("ro/old", b"o").file("ro/stay", b"s").dir("ro2", 0o500)
          .dir("ro2/sub", 0o555).file("ro2/sub/f", b"f").dir("gone", 0o555).dir("gone/deep", 0o555)
          .file("gone/deep/f", b"f").file("h", b"h").hardlink("h2", "h").symlink("sl", "ro/old")
          .fifo("fifo").file("x", b"x", mode=0o400, xattrs={"user.k": "v"}).bytes())
    l1 = (T().dir("ro", 0o555).file("ro/.wh.old").file("ro/new", b"n").dir("ro2", 0o500)
          .file("ro2/.wh..wh..opq").file("ro2/top", b"t").file(".wh.gone").bytes())
    layers = build(tmp_path, [l0, l1], privileged=False)
    uid = 1000
    for dirpath, dirs, files in os.walk(tmp_path / "img-store"):
        for n in [".", *dirs, *files]:
            os.chown(Path(dirpath) / n, uid, uid, follow_symlinks=False)
    os.chmod(tmp_path, 0o711)
    (tmp_path / "rootfs-user").mkdir()
    os.chown(tmp_path / "rootfs-user", uid, uid)
    rel = [(os.path.relpath(d, tmp_path), w) for d, w in layers]

    def body() -> bool:
        from ociruntime.linux.prctl import set_dumpable

        os.chdir(tmp_path)  # relative paths: pytest's base directory is root's alone
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        set_dumpable(True)  # /proc/self/fd is ours again after the uid change
        flatten(rel, "rootfs-user")
        return True

    assert run_in_child(body)
    user = tree(tmp_path / "rootfs-user")
    assert user == tree(flat(tmp_path, layers))
    assert sorted(os.listdir(tmp_path / "rootfs-user/ro")) == ["new", "stay"]
    assert "gone" not in user and sorted(os.listdir(tmp_path / "rootfs-user/ro2")) == ["top"]
    assert stat.S_IMODE((tmp_path / "rootfs-user/ro2").stat().st_mode) == 0o500


@pytest.fixture
def deep_tmp(tmp_path):
    """tmp_path, emptied afterwards with rm(1): pytest removes old temp directories with
    shutil.rmtree, which recurses per level and would fail on these trees in a later session."""
    yield tmp_path
    subprocess.run(["rm", "-rf", "--one-file-system", str(tmp_path)], check=True)
    tmp_path.mkdir()


def test_deep_tree_no_recursion_limit(deep_tmp) -> None:
    tmp_path = deep_tmp
    deep = "/".join(["d"] * 1500)  # deeper than Python's recursion limit
    l0 = T().file(f"{deep}/bottom", b"b").file(f"{deep}/gone", b"g").file("d/d/d/x", b"x").bytes()
    l1 = T().file(f"{deep}/.wh.gone").file("d/d/.wh..wh..opq").file(f"{deep}/top", b"t").bytes()
    for name, privileged in (("applied", None), ("recorded", False)):
        layers = build(tmp_path, [l0, l1], privileged=privileged, name=name)
        dest = flat(tmp_path, layers, f"rootfs-{name}")
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(1500):
                nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            assert sorted(os.listdir(fd)) == ["top"]  # the opaque d/d hid bottom; gone whited out
        finally:
            os.close(fd)


# -- errors --

def test_dest_must_be_empty_and_exist(tmp_path) -> None:
    layers = build(tmp_path, [T().file("a", b"a").bytes()])
    dest = tmp_path / "rootfs"
    dest.mkdir()
    (dest / "x").write_bytes(b"")
    with pytest.raises(ImageError, match=r"rootfs is not empty$"):
        flatten(layers, str(dest))
    with pytest.raises(ImageError, match="missing: no such file or directory"):
        flatten(layers, str(tmp_path / "missing"))


def test_bad_whiteout_records_refused(tmp_path) -> None:
    layers = build(tmp_path, [T().file("a", b"a").bytes()])
    for bad, msg in [({"path": "../x", "kind": "file", "applied": False}, "invalid whiteout path '../x'"),
                     ({"path": "/x", "kind": "opaque", "applied": False}, "invalid whiteout path"),
                     ({"path": "x", "kind": "other"}, "invalid whiteout record")]:
        dest = tmp_path / f"r{len(os.listdir(tmp_path))}"
        dest.mkdir()
        with pytest.raises(ImageError, match=r"flatten layer 1 of 1 \(.*/diff\): " + msg):
            flatten([(layers[0][0], [bad])], str(dest))


def test_missing_diff_named(tmp_path) -> None:
    dest = tmp_path / "rootfs"
    dest.mkdir()
    with pytest.raises(ImageError, match=r"^flatten layer 1 of 1 \(.*/nope\): no such file or directory$"):
        flatten([(str(tmp_path / "nope"), [])], str(dest))


@needs_root
def test_failure_names_the_path(tmp_path, monkeypatch) -> None:
    layers = build(tmp_path, [T().dir("etc").file("etc/hosts", b"h").bytes()])
    real = os.open

    def failing(path, flags, mode=0o777, *, dir_fd=None):
        if path == "hosts" and flags & os.O_CREAT:
            raise OSError(28, os.strerror(28))
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", failing)
    dest = tmp_path / "rootfs"
    dest.mkdir()
    with pytest.raises(ImageError, match=r"^flatten layer 1 of 1 \(.*\): etc/hosts: no space left on device"):
        flatten(layers, str(dest))


# -- copy_tree --

def _make_source(src: Path, outside: Path) -> None:
    (src / "dir/sub").mkdir(parents=True)
    (src / "dir/sub/f").write_bytes(b"f" * 300_000)
    (src / "suid").write_bytes(b"#!")
    os.chmod(src / "suid", 0o4751)
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    (src / "owned").write_bytes(b"o")
    os.symlink(str(outside), src / "escape")       # copied as a link, never entered
    os.symlink("../../etc/passwd", src / "dir/rel")
    os.link(src / "dir/sub/f", src / "hard")
    os.setxattr(src / "owned", "user.k", b"v")
    os.mkfifo(src / "fifo")
    (src / "ro").mkdir()
    (src / "ro/inside").write_bytes(b"i")
    os.chmod(src / "ro", 0o555)
    (src / "to-dir").write_bytes(b"was a file in dst")  # replaced by... see dst below
    (src / "to-file").mkdir()
    (src / "to-file/x").write_bytes(b"x")
    (src / "through").mkdir()
    (src / "through/new").write_bytes(b"pwned")
    for p in ("suid", "owned", "dir/sub/f"):
        os.utime(src / p, ns=(MTIME * 10**9, MTIME * 10**9))
    if ROOT:
        os.chown(src / "owned", 1234, 4321)
        os.chown(src / "escape", 77, 88, follow_symlinks=False)
        os.chown(src / "dir", 5, 6)
        os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.setxattr(src / "dir", "trusted.overlay.opaque", b"y")
        os.setxattr(src / "dir", "trusted.x", b"t")


def test_copy_tree_keeps_everything_and_merges(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"k")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    _make_source(src, outside)
    os.chmod(src, 0o750)
    dst.mkdir()
    (dst / "dir").mkdir()
    (dst / "dir/existing").write_bytes(b"kept")  # merged: stays
    os.setxattr(dst / "dir", "user.stale", b"s")  # the source directory's xattrs replace it
    (dst / "to-dir").mkdir()
    (dst / "to-dir/deep").mkdir()
    (dst / "to-file").write_bytes(b"file")
    os.symlink(str(outside), dst / "through")  # src has a directory there: replaced, not followed
    before = tree(outside)
    want = snapshot(src)

    _copy(src, dst)

    assert tree(outside) == before
    got = snapshot(dst)
    assert got.pop("dir/existing")[4] == b"kept"
    if ROOT:  # overlayfs's own xattrs are never copied
        assert [k for k, _ in want["dir"][5]] == ["trusted.overlay.opaque", "trusted.x"]
        want["dir"] = (*want["dir"][:5], (("trusted.x", b"t"),), None)
    assert got == want
    assert os.readlink(dst / "escape") == str(outside) and os.readlink(dst / "dir/rel") == "../../etc/passwd"
    assert (dst / "hard").stat().st_ino == (dst / "dir/sub/f").stat().st_ino
    assert stat.S_IMODE(dst.stat().st_mode) == 0o750
    assert (dst / "through/new").read_bytes() == b"pwned" and not (outside / "new").exists()
    if ROOT:
        assert (dst / "escape").lstat().st_uid == 77
        st = (dst / "owned").stat()
        assert (st.st_uid, st.st_gid) == (1234, 4321)


def _copy(src: Path, dst: Path) -> None:
    s = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        d = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
        try:
            copy_tree(s, d)
        finally:
            os.close(d)
    finally:
        os.close(s)


@pytest.mark.parametrize("refused", [(), ("copy_file_range",), ("copy_file_range", "sendfile")])
def test_copy_tree_data_through_each_fallback(tmp_path, monkeypatch, refused) -> None:
    def refuse(*a: object) -> int:
        raise OSError(18, os.strerror(18))  # EXDEV

    for name in refused:
        monkeypatch.setattr(os, name, refuse)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    data = os.urandom(3 << 20) + b"tail"
    (src / "big").write_bytes(data)
    (src / "empty").write_bytes(b"")
    _copy(src, dst)
    assert (dst / "big").read_bytes() == data and (dst / "empty").read_bytes() == b""


def test_copy_tree_error_names_the_path(tmp_path, monkeypatch) -> None:
    def broken(*a: object) -> int:
        raise OSError(5, os.strerror(5))  # EIO: not a reason to fall back

    monkeypatch.setattr(os, "copy_file_range", broken)
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    (src / "a/f").write_bytes(b"f")
    dst.mkdir()
    with pytest.raises(ImageError, match=r"^copy tree: a/f: input/output error$"):
        _copy(src, dst)


def test_error_with_an_unprintable_name_stays_one_line(tmp_path, monkeypatch) -> None:
    def broken(*a: object) -> int:
        raise OSError(5, os.strerror(5))

    monkeypatch.setattr(os, "copy_file_range", broken)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a\nb").write_bytes(b"x")
    with pytest.raises(ImageError) as err:
        _copy(src, dst)
    assert str(err.value) == "copy tree: 'a\\nb': input/output error"
