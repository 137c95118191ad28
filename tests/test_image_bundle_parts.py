"""The pieces of `bundle create` that need no container: image argument, overlay options, volume
flags and plans, the volume store and its seeding (which must never leave the rootfs)."""

from __future__ import annotations

import json
import os

import pytest

from ociruntime.errors import ImageError, UsageError
from ociruntime.image import overlay
from ociruntime.image.bundle import split_image_arg
from ociruntime.image.volumes import (
    Volume,
    VolumeStore,
    clean_destination,
    mount_entry,
    parse_bind,
    parse_tmpfs,
    parse_volume,
    plan_volumes,
)

ROOT = os.geteuid() == 0

# -- SRC[:REF] --


def test_image_argument_split_at_the_longest_existing_prefix(tmp_path) -> None:
    a = tmp_path / "img.tar"
    a.write_bytes(b"")
    assert split_image_arg(str(a)) == (str(a), None)
    assert split_image_arg(f"{a}:latest") == (str(a), "latest")
    ref = "docker.io/library/busybox:1.36"
    assert split_image_arg(f"{a}:{ref}") == (str(a), ref)
    odd = tmp_path / "x:y"   # a path with a colon is still found whole
    odd.mkdir()
    assert split_image_arg(str(odd)) == (str(odd), None)
    assert split_image_arg(f"{odd}:tag") == (str(odd), "tag")
    with pytest.raises(ImageError, match="no such file"):
        split_image_arg(str(tmp_path / "missing.tar:tag"))


# -- overlay options --

def test_overlay_options_top_first() -> None:
    assert overlay.overlay_options(["/s/c", "/s/b", "/s/a"], "/b/upper", "/b/work") == \
        "lowerdir=/s/c:/s/b:/s/a,upperdir=/b/upper,workdir=/b/work"


@pytest.mark.parametrize("bad", ["/x,y", "/x:y", "/x\\y"])
def test_overlay_refuses_separator_characters(tmp_path, bad, monkeypatch) -> None:
    monkeypatch.setattr(overlay.m, "mount", lambda *a: pytest.fail("mounted"))
    with pytest.raises(ImageError, match="cannot name it"):
        overlay.mount_overlay([bad], "/u", "/w", "/t", str(tmp_path))


def test_overlay_refuses_too_many_layers(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(overlay.m, "mount", lambda *a: pytest.fail("mounted"))
    with pytest.raises(ImageError, match="at most 500"):
        overlay.mount_overlay([f"/l/{i}" for i in range(501)], "/u", "/w", "/t", str(tmp_path))


def test_long_stack_goes_through_short_links(tmp_path, monkeypatch) -> None:
    lowers = [str(tmp_path / "store" / f"{i:064x}" / "diff") for i in range(80)]  # top first
    calls = []

    def fake_mount(source, target, fstype, flags, data):
        calls.append((os.getcwd(), data))

    monkeypatch.setattr(overlay.m, "mount", fake_mount)
    here = os.getcwd()
    overlay.mount_overlay(lowers, "/b/upper", "/b/work", "/b/rootfs", str(tmp_path))
    assert os.getcwd() == here                          # the chdir is undone
    (cwd, data), = calls
    assert cwd == str(tmp_path / overlay.LINK_DIR) and len(data) <= overlay.OPTIONS_MAX
    names = data.split(",")[0].removeprefix("lowerdir=").split(":")
    assert names == [str(i) for i in range(79, -1, -1)]  # top first, "0" the bottom layer
    assert [os.readlink(tmp_path / overlay.LINK_DIR / n) for n in names] == lowers


def test_short_stack_uses_absolute_paths(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(overlay.m, "mount", lambda *a: calls.append(a))
    overlay.mount_overlay(["/s/b", "/s/a"], "/b/upper", "/b/work", "/b/rootfs", str(tmp_path))
    assert calls == [("overlay", "/b/rootfs", "overlay", 0,
                      "lowerdir=/s/b:/s/a,upperdir=/b/upper,workdir=/b/work")]
    assert not (tmp_path / overlay.LINK_DIR).exists()


def test_mount_failure_is_one_line_with_the_copy_hint(tmp_path, monkeypatch) -> None:
    def enodev(*a):
        raise OSError(19, "No such device")

    monkeypatch.setattr(overlay.m, "mount", enodev)
    with pytest.raises(ImageError, match=r"^overlay mount on /t: No such device \(use --copy"):
        overlay.mount_overlay(["/a"], "/u", "/w", "/t", str(tmp_path))


# -- volume flags --

def test_volume_flags_parse() -> None:
    assert parse_volume("data:/var/lib/x:ro") == Volume("volume", "data", "/var/lib/x", True)
    assert parse_volume("data:/srv//www/") == Volume("volume", "data", "/srv/www", False)
    assert parse_tmpfs("/run/x:size=1m,mode=700") == Volume("tmpfs", "", "/run/x", False,
                                                            ("size=1m", "mode=700"))
    assert parse_bind("/tmp:/h:rw") == Volume("bind", "/tmp", "/h", False)


@pytest.mark.parametrize(("fn", "text", "msg"), [
    (parse_volume, "data", "NAME:/path"),
    (parse_volume, "../x:/d", "volume name"),
    (parse_volume, ".lock:/d", "volume name"),
    (parse_volume, "a/b:/d", "volume name"),
    (parse_volume, "data:relative", "must be absolute"),
    (parse_volume, "data:/a/../b", "'..'"),
    (parse_volume, "data:/", "root"),
    (parse_volume, "data:/x:rx", "unknown mode"),
    (parse_bind, "relative:/x", "must be absolute"),
    (parse_bind, "/nonexistent-ociruntime-test:/x", "does not exist"),
    (parse_tmpfs, "tmp", "must be absolute"),
])
def test_bad_volume_flags(fn, text, msg) -> None:
    with pytest.raises(UsageError, match=msg):
        fn(text)


def test_clean_destination() -> None:
    assert clean_destination("//a/./b/", "x") == "/a/b"


def test_plan_covers_image_volumes_and_orders_by_depth() -> None:
    explicit = [parse_tmpfs("/data/cache"), parse_volume("v:/data")]
    plan = plan_volumes(explicit, ["/data", "/var/log", "/data/cache/x"])
    assert [(v.kind, v.destination) for v in plan] == [
        ("volume", "/data"), ("tmpfs", "/data/cache"), ("anonymous", "/var/log"),
        ("anonymous", "/data/cache/x")]
    with pytest.raises(UsageError, match="two volumes"):
        plan_volumes([parse_volume("a:/x"), parse_tmpfs("/x")], [])


def test_mount_entries() -> None:
    assert mount_entry(parse_volume("v:/d:ro"), "/s/v/_data") == {
        "destination": "/d", "type": "bind", "source": "/s/v/_data", "options": ["rbind", "ro"]}
    assert mount_entry(parse_tmpfs("/t"), "") == {
        "destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}


# -- the volume store and seeding --

def _rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "srv" / "www" / "sub").mkdir(parents=True)
    (root / "srv" / "www" / "index.html").write_text("hi\n")
    (root / "srv" / "www" / "sub" / "f").write_text("f\n")
    (root / "srv" / "www" / "link").symlink_to("/etc/passwd")   # copied as a link, never followed
    os.chmod(root / "srv" / "www", 0o750)
    return root


def test_named_volume_created_seeded_once(tmp_path) -> None:
    root = _rootfs(tmp_path)
    vs = VolumeStore(str(tmp_path / "store"))
    data, created = vs.ensure("web", str(root), "/srv/www")
    assert created and sorted(os.listdir(data)) == ["index.html", "link", "sub"]
    assert os.readlink(os.path.join(data, "link")) == "/etc/passwd"
    assert os.stat(data).st_mode & 0o7777 == 0o750                 # the image directory's mode
    assert json.loads((tmp_path / "store" / "volumes" / "web" / "volume.json").read_text())["name"] == "web"
    with open(os.path.join(data, "index.html"), "w") as f:
        f.write("changed\n")
    again, created = vs.ensure("web", str(root), "/srv/www")       # existing: not seeded again
    assert again == data and not created
    assert open(os.path.join(data, "index.html")).read() == "changed\n"
    assert vs.names() == ["web"]
    vs.remove("web")
    assert vs.names() == []


def test_leftover_of_a_killed_create_is_seeded_afresh(tmp_path) -> None:
    root = _rootfs(tmp_path)
    half = tmp_path / "store" / "volumes" / "web" / "_data"
    half.mkdir(parents=True)
    (half / "partial").write_text("x")          # no volume.json: never published
    vs = VolumeStore(str(tmp_path / "store"))
    data, created = vs.ensure("web", str(root), "/srv/www")
    assert created and "partial" not in os.listdir(data) and "index.html" in os.listdir(data)


def test_missing_path_gives_an_empty_volume_and_a_file_is_refused(tmp_path) -> None:
    root = _rootfs(tmp_path)
    vs = VolumeStore(str(tmp_path / "store"))
    data, _ = vs.ensure("empty", str(root), "/no/such/dir")
    assert os.listdir(data) == []
    with pytest.raises(ImageError, match="a file there"):
        vs.ensure("file", str(root), "/srv/www/index.html")
    assert vs.names() == ["empty"]              # the refused one left nothing


@pytest.mark.parametrize("target", ["/etc", "../../../../../../etc", "/"])
def test_seeding_never_leaves_the_rootfs(tmp_path, target) -> None:
    """An image whose volume path is a symlink out of the rootfs (to the host's /etc when
    followed naively) seeds from inside the rootfs, where it resolves to nothing or to the
    rootfs's own directories; the host's files are never copied."""
    root = _rootfs(tmp_path)
    (root / "data").symlink_to(target)
    vs = VolumeStore(str(tmp_path / "store"))
    data, _ = vs.ensure("evil", str(root), "/data")
    copied = set(os.listdir(data))
    assert "passwd" not in copied and "shadow" not in copied and "hostname" not in copied
    assert copied <= set(os.listdir(root))      # at most the rootfs's own top level ("/" case)
