"""Layer application: content, metadata, whiteouts in overlay form, hostile tars refused whole."""

from __future__ import annotations

import gzip
import io
import os
import stat

import pytest
from imagebuild import MTIME, T, sample_layers, sha

from ociruntime.errors import ImageError
from ociruntime.image.layers import OPAQUE_XATTR, Limits, apply_layer

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")


def apply(tmp_path, data: bytes, **kw):
    return apply_layer(io.BytesIO(data), tmp_path / "layer", **kw)


def test_base_layer_content(tmp_path) -> None:
    l0 = sample_layers()[0]
    res = apply(tmp_path, l0, diff_id=sha(l0), privileged=ROOT)
    d = tmp_path / "layer"
    assert res.diff_id == sha(l0) and res.size == len(l0)
    assert (d / "etc/passwd").read_bytes().startswith(b"root:")
    assert os.readlink(d / "usr/bin") == "../bin"
    assert (d / "bin/ls").stat().st_ino == (d / "bin/sh").stat().st_ino  # hard link kept
    assert (d / "etc/hosts").stat().st_mtime_ns == MTIME * 10**9
    assert (d / "keep").stat().st_mtime_ns == MTIME * 10**9  # directories get theirs at the end
    assert stat.S_IMODE((d / "keep").stat().st_mode) == 0o750
    assert res.whiteouts == [] and res.warnings == []


def test_gzip_layer_and_diff_id_over_uncompressed(tmp_path) -> None:
    l0 = sample_layers()[0]
    res = apply(tmp_path, gzip.compress(l0), compression="gzip", diff_id=sha(l0))
    assert res.diff_id == sha(l0)


@needs_root
def test_owner_mode_setuid_kept_as_root(tmp_path) -> None:
    apply(tmp_path, sample_layers()[0], privileged=True)
    d = tmp_path / "layer"
    st = (d / "bin/sh").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    st = (d / "keep/owned").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o640)
    assert ((d / "keep").stat().st_uid, (d / "keep").stat().st_gid) == (5, 6)


def test_unprivileged_drops_setuid_and_owner(tmp_path) -> None:
    apply(tmp_path, sample_layers()[0], privileged=False)
    d = tmp_path / "layer"
    assert stat.S_IMODE((d / "bin/sh").stat().st_mode) == 0o755
    assert (d / "keep/owned").stat().st_uid == os.geteuid()


@needs_root
def test_whiteouts_overlay_form_as_root(tmp_path) -> None:
    l1 = sample_layers()[1]
    res = apply(tmp_path, l1, privileged=True)
    d = tmp_path / "layer"
    st = (d / "del/me").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (d / "del/.wh.me").exists()
    assert os.getxattr(d / "opt/data", OPAQUE_XATTR) == b"y"
    assert not (d / "opt/data/.wh..wh..opq").exists()
    assert (d / "opt/data/c").read_bytes() == b"c\n"
    assert sorted((w.path, w.kind, w.applied) for w in res.whiteouts) == [
        ("del/me", "file", True), ("opt/data", "opaque", True)]
    assert stat.S_IMODE((d / "etc/new").stat().st_mode) == 0o2755


def test_whiteouts_recorded_when_unprivileged(tmp_path) -> None:
    res = apply(tmp_path, sample_layers()[1], privileged=False)
    d = tmp_path / "layer"
    assert not os.path.lexists(d / "del/me")
    assert OPAQUE_XATTR not in os.listxattr(d / "opt/data")
    assert sorted((w.path, w.kind, w.applied) for w in res.whiteouts) == [
        ("del/me", "file", False), ("opt/data", "opaque", False)]


@needs_root
def test_device_nodes_only_when_privileged(tmp_path) -> None:
    data = T().dir("dev").chardev("dev/null", 1, 3).fifo("dev/fifo").bytes()
    apply_layer(io.BytesIO(data), tmp_path / "a", privileged=True)
    st = (tmp_path / "a/dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    res = apply_layer(io.BytesIO(data), tmp_path / "b", privileged=False)
    assert not os.path.lexists(tmp_path / "b/dev/null")
    assert stat.S_ISFIFO((tmp_path / "b/dev/fifo").lstat().st_mode)
    assert any("dev/null: device node skipped" in w for w in res.warnings)


def test_xattrs_user_kept_overlay_refused(tmp_path) -> None:
    data = (T().file("a", b"1", xattrs={"user.one": "1", "trusted.overlay.redirect": "/x",
                                        "user.overlay.opaque": "y", "security.selinux": "x"}).bytes())
    res = apply(tmp_path, data, privileged=ROOT)
    names = os.listxattr(tmp_path / "layer/a")
    assert "user.one" in names
    assert not {"trusted.overlay.redirect", "user.overlay.opaque", "security.selinux"} & set(names)
    assert sum("not applied" in w for w in res.warnings) == 3


@needs_root
def test_trusted_xattr_as_root(tmp_path) -> None:
    data = T().file("a", b"1", xattrs={"trusted.mine": "v"}).bytes()
    apply(tmp_path, data, privileged=True)
    assert os.getxattr(tmp_path / "layer/a", "trusted.mine") == b"v"


def test_later_member_replaces_earlier(tmp_path) -> None:
    data = T().dir("x").file("x/f", b"1").file("x", b"now a file").file("y", b"1").symlink("y", "z").bytes()
    apply(tmp_path, data)
    assert (tmp_path / "layer/x").read_bytes() == b"now a file"
    assert os.readlink(tmp_path / "layer/y") == "z"


# --- hostile input: each refused with a clear error, nothing left --------------------------------

HOSTILE = {
    "dotdot": (T().file("../x", b"evil").bytes(), "'..' component"),
    "dotdot-inner": (T().dir("a").file("a/../../x", b"evil").bytes(), "'..' component"),
    "absolute": (T().file("/abs", b"evil").bytes(), "absolute name '/abs'"),
    "symlink-parent": (T().symlink("root", "/").file("root/tmp/evil", b"evil").bytes(),
                       "root is a symlink or not a directory"),
    "symlink-parent-relative": (T().dir("a").symlink("a/up", "../..").file("a/up/evil", b"x").bytes(),
                                "a/up is a symlink"),
    "symlink-below-cached-parent": (T().dir("a").dir("a/b").file("a/b/f", b"").symlink("a/b/c", "/")
                                    .file("a/b/c/evil", b"x").bytes(), "a/b/c is a symlink"),
    "symlink-replaces-dir": (T().dir("a").file("a/f", b"").symlink("a", "/").file("a/evil", b"x").bytes(),
                             "a is a symlink"),
    "hardlink-absolute": (T().hardlink("passwd", "/etc/passwd").bytes(), "absolute hard link target"),
    "hardlink-dotdot": (T().hardlink("passwd", "../../etc/passwd").bytes(), "'..' component"),
    "hardlink-not-in-layer": (T().hardlink("passwd", "etc/passwd").bytes(), "is not in this layer"),
    "hardlink-through-symlink": (T().symlink("etc", "/etc").hardlink("passwd", "etc/passwd").bytes(),
                                 "etc is a symlink"),
    "hardlink-dir": (T().dir("d").hardlink("l", "d").bytes(), "is a directory"),
    "root-as-file": (T().file("./", b"").bytes(), "names the layer root"),
    "size-too-large": (T().file("a", b"short", size=100000).bytes(), "unexpected end of data"),
    "size-too-small": (T().file("a", b"x" * 2000, size=10).file("b", b"after").bytes(),
                       "data after the end of the tar archive"),
    "garbage": (b"\x01" * 4096, "corrupt layer"),
    "huge-uid": (T().file("a", b"x", uid=1 << 40).bytes(), "invalid value"),
    "empty": (b"", "corrupt layer"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_refused(tmp_path, case) -> None:
    data, fragment = HOSTILE[case]
    if case == "huge-uid" and not ROOT:
        pytest.skip("ownership is only applied as root")
    before = set(os.listdir(tmp_path))
    with pytest.raises(ImageError) as e:
        apply(tmp_path, data, privileged=ROOT, what="layer 0")
    assert fragment in str(e.value)
    assert str(e.value).startswith("layer 0: ")
    assert set(os.listdir(tmp_path)) == before  # the partial directory is gone
    assert not os.path.lexists("/tmp/evil")


def test_symlink_then_file_through_it_writes_nothing_outside(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = T().symlink("link", str(outside)).file("link/planted", b"evil").bytes()
    with pytest.raises(ImageError):
        apply(tmp_path, data)
    assert os.listdir(outside) == []


def test_too_many_files(tmp_path) -> None:
    t = T()
    for i in range(20):
        t.file(f"f{i}", b"")
    with pytest.raises(ImageError, match="more than 10 entries"):
        apply(tmp_path, t.bytes(), limits=Limits(max_files=10))
    assert not (tmp_path / "layer").exists()


def test_too_many_bytes_stream_and_bomb(tmp_path) -> None:
    data = T().file("big", bytes(1 << 20)).bytes()
    with pytest.raises(ImageError, match="larger than the limit of 65536 bytes"):
        apply(tmp_path, gzip.compress(data), compression="gzip", limits=Limits(max_bytes=65536))
    assert not (tmp_path / "layer").exists()


def test_long_name_refused(tmp_path) -> None:
    data = T().file("a" * 200, b"").bytes()
    with pytest.raises(ImageError, match="longer than 100 bytes"):
        apply(tmp_path, data, limits=Limits(max_path=100))


def test_huge_pax_header_refused(tmp_path) -> None:
    data = T().file("a", b"", xattrs={"user.big": "x" * (2 << 20)}).bytes()
    with pytest.raises(ImageError, match="tar metadata header"):
        apply(tmp_path, data)


def test_wrong_diff_id_refused(tmp_path) -> None:
    l0 = sample_layers()[0]
    with pytest.raises(ImageError, match="DiffID mismatch"):
        apply(tmp_path, l0, diff_id=sha(b"something else"))
    assert not (tmp_path / "layer").exists()


def test_zstd_refused(tmp_path) -> None:
    with pytest.raises(ImageError, match="zstd-compressed layers are not supported"):
        apply(tmp_path, b"", compression="zstd")


def test_corrupt_gzip(tmp_path) -> None:
    data = gzip.compress(sample_layers()[0])
    with pytest.raises(ImageError, match="corrupt layer"):
        apply(tmp_path, data[: len(data) // 2], compression="gzip")
    with pytest.raises(ImageError, match="corrupt layer"):
        apply(tmp_path, data + b"trailing garbage", compression="gzip")
    assert not (tmp_path / "layer").exists()


def test_existing_destination_refused(tmp_path) -> None:
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer/keep").write_text("mine")
    with pytest.raises(ImageError, match="create layer directory"):
        apply(tmp_path, sample_layers()[0])
    assert (tmp_path / "layer/keep").read_text() == "mine"


def test_deep_tree(tmp_path) -> None:
    t = T()
    path = "d"
    for _ in range(300):
        t.dir(path)
        t.file(path + "/f", b"x")
        path += "/d"
    res = apply(tmp_path, t.bytes())
    assert res.entries == 600
    assert (tmp_path / "layer" / "/".join(["d"] * 300) / "f").read_bytes() == b"x"
