"""Image config -> config.json (ociruntime/image/runspec.py): conversion.md's rules, the
overrides, user resolution inside a hostile rootfs, and schema validity of the result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ociruntime.errors import ImageError
from ociruntime.image import runspec
from ociruntime.image.runspec import DEFAULT_PATH, build_config, image_volumes, resolve_user
from ociruntime.spec import schema

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment, and a malformed line below
broken:x:notanumber:0::/:/bin/false
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
nogroups:x:1002:1002::/:/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:root,alice
alice:x:1000:alice
bob:x:1001:
audio:x:29:bob,alice
video:x:44:alice
dup:x:29:alice
staff:x:50:
"""


def make_rootfs(path: Path, passwd: str | None = PASSWD, group: str | None = GROUP) -> Path:
    (path / "etc").mkdir(parents=True)
    if passwd is not None:
        (path / "etc" / "passwd").write_text(passwd)
    if group is not None:
        (path / "etc" / "group").write_text(group)
    return path


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    return str(make_rootfs(tmp_path / "rootfs"))


def image(**config: object) -> dict:
    doc: dict = {"architecture": "amd64", "os": "linux",
                 "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Cmd": ["/bin/sh"]}}
    doc["config"].update(config)
    return doc


def env_dict(spec: dict) -> dict[str, str]:
    out = {}
    for e in spec["process"]["env"]:
        k, _, v = e.partition("=")
        assert k not in out, f"duplicate env key {k}"
        out[k] = v
    return out


# --- whole document ------------------------------------------------------------------------


def test_minimal_image_is_valid_and_based_on_default(rootfs) -> None:
    spec = build_config(image(), rootfs)
    schema.validate(spec, "config")
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["process"]["args"] == ["/bin/sh"]
    assert spec["process"]["terminal"] is False
    assert spec["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [10]}
    assert spec["process"]["cwd"] == "/"
    assert spec["hostname"] == "ociruntime"
    # The rest comes from the default spec untouched.
    assert spec["mounts"][0]["destination"] == "/proc"
    assert {"type": "pid"} in spec["linux"]["namespaces"]


def test_full_image_with_overrides_is_schema_valid(rootfs) -> None:
    doc = image(Entrypoint=["/entry"], Cmd=["a"], Env=["A=1", "PATH=/bin"], User="alice",
                WorkingDir="/srv", Labels={"x.y": "z"}, ExposedPorts={"80/tcp": {}},
                StopSignal="SIGQUIT", Volumes={"/data": {}})
    spec = build_config(doc, rootfs, hostname="web", args=["b", "c"], env=["B=2"], user="bob:staff",
                        workdir="/tmp", terminal=True, readonly=True)
    schema.validate(spec, "config")
    assert spec["process"]["args"] == ["/entry", "b", "c"]
    assert spec["process"]["user"] == {"uid": 1001, "gid": 50}
    assert spec["process"]["cwd"] == "/tmp"
    assert spec["process"]["terminal"] is True
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["hostname"] == "web"
    assert "mounts" in spec and all(m["destination"] != "/data" for m in spec["mounts"])


def test_terminal_and_readonly_flags(rootfs) -> None:
    spec = build_config(image(), rootfs, terminal=True, readonly=True)
    assert spec["process"]["terminal"] is True and spec["root"]["readonly"] is True
    spec = build_config(image(), rootfs)
    assert spec["process"]["terminal"] is False and spec["root"]["readonly"] is False


def test_each_call_returns_a_fresh_document(rootfs) -> None:
    a = build_config(image(), rootfs)
    a["process"]["env"].append("X=1")
    a["mounts"].clear()
    b = build_config(image(), rootfs)
    assert "X=1" not in b["process"]["env"] and b["mounts"]


@pytest.mark.parametrize("os_value", ["windows", "", None, 3])
def test_non_linux_image_refused(rootfs, os_value) -> None:
    doc = image()
    doc["os"] = os_value
    with pytest.raises(ImageError):
        build_config(doc, rootfs)


def test_missing_config_section_needs_a_command(rootfs) -> None:
    doc = {"os": "linux", "architecture": "amd64"}
    with pytest.raises(ImageError, match=r"^image has no command: give one$"):
        build_config(doc, rootfs)
    spec = build_config(doc, rootfs, args=["/bin/true"])
    assert spec["process"]["args"] == ["/bin/true"]
    schema.validate(spec, "config")


@pytest.mark.parametrize("field,value", [
    ("Cmd", "/bin/sh"), ("Entrypoint", [1]), ("Env", "A=1"), ("User", 0), ("WorkingDir", ["/"]),
    ("Labels", ["a"]), ("Labels", {"a": 1}), ("ExposedPorts", ["80/tcp"]), ("StopSignal", 9),
])
def test_malformed_config_fields_refused(rootfs, field, value) -> None:
    with pytest.raises(ImageError, match=f"config.{field}"):
        build_config(image(**{field: value}), rootfs)


def test_not_an_object_refused(rootfs) -> None:
    with pytest.raises(ImageError):
        build_config(["linux"], rootfs)  # type: ignore[arg-type]
    doc = image()
    doc["config"] = "x"
    with pytest.raises(ImageError, match="config: expected an object"):
        build_config(doc, rootfs)


# --- args ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ep,cmd,kw,want", [
    (["/ep", "-x"], ["a", "b"], {}, ["/ep", "-x", "a", "b"]),
    (None, ["a", "b"], {}, ["a", "b"]),
    (["/ep"], None, {}, ["/ep"]),
    (["/ep"], ["a"], {"args": ["z"]}, ["/ep", "z"]),
    (["/ep"], ["a"], {"args": []}, ["/ep"]),
    (None, ["a"], {"args": ["z", "y"]}, ["z", "y"]),
    # --entrypoint drops the image's Cmd, as docker does
    (["/ep"], ["a"], {"entrypoint": ["/other"]}, ["/other"]),
    (["/ep"], ["a"], {"entrypoint": ["/other"], "args": ["q"]}, ["/other", "q"]),
    (["/ep"], ["a"], {"entrypoint": [], "args": ["/bin/x"]}, ["/bin/x"]),
])
def test_args(rootfs, ep, cmd, kw, want) -> None:
    doc = image(Entrypoint=ep, Cmd=cmd)
    assert build_config(doc, rootfs, **kw)["process"]["args"] == want


@pytest.mark.parametrize("ep,cmd,kw", [
    (None, None, {}), ([], [], {}), (["/ep"], ["a"], {"entrypoint": []}),
    (None, ["a"], {"args": []}),
])
def test_no_command_refused(rootfs, ep, cmd, kw) -> None:
    with pytest.raises(ImageError, match=r"^image has no command: give one$"):
        build_config(image(Entrypoint=ep, Cmd=cmd), rootfs, **kw)


# --- env -------------------------------------------------------------------------------------


def test_env_image_then_overrides_by_key(rootfs) -> None:
    doc = image(Env=["A=1", "PATH=/img/bin", "B=2", "A=3"])
    spec = build_config(doc, rootfs, env=["B=override", "C=new", "EMPTY="], hostname="h")
    env = spec["process"]["env"]
    # image order kept, the image's own duplicate resolved last-wins, overrides in place
    assert env[:3] == ["A=3", "PATH=/img/bin", "B=override"]
    assert env_dict(spec) == {"A": "3", "PATH": "/img/bin", "B": "override", "C": "new", "EMPTY": "",
                              "HOSTNAME": "h"}


def test_env_defaults_only_when_absent(rootfs) -> None:
    spec = build_config(image(Env=[]), rootfs)
    assert env_dict(spec) == {"PATH": DEFAULT_PATH, "HOSTNAME": "ociruntime"}
    spec = build_config(image(Env=None), rootfs, terminal=True, hostname="box")
    assert env_dict(spec) == {"PATH": DEFAULT_PATH, "HOSTNAME": "box", "TERM": "xterm"}
    # the image's (or the caller's) value is never replaced by a default
    spec = build_config(image(Env=["TERM=vt100", "HOSTNAME=fixed"]), rootfs, terminal=True, hostname="b",
                        env=["PATH=/x"])
    assert env_dict(spec) == {"TERM": "vt100", "HOSTNAME": "fixed", "PATH": "/x"}


def test_value_may_contain_equals(rootfs) -> None:
    spec = build_config(image(Env=["OPTS=a=b=c"]), rootfs, env=["X==y"])
    assert env_dict(spec)["OPTS"] == "a=b=c" and env_dict(spec)["X"] == "=y"


@pytest.mark.parametrize("field,bad", [("image", "NOEQUALS"), ("image", "=v"), ("env", "JUSTKEY"),
                                       ("env", "=1")])
def test_invalid_env_entry_refused(rootfs, field, bad) -> None:
    with pytest.raises(ImageError, match="invalid environment entry"):
        if field == "image":
            build_config(image(Env=[bad]), rootfs)
        else:
            build_config(image(), rootfs, env=[bad])


# --- cwd -------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_wd,workdir,want", [
    (None, None, "/"), ("", None, "/"), ("/app", None, "/app"), ("/app/", None, "/app"),
    ("//srv/./x/../y", None, "/srv/y"), ("/app", "/override", "/override"), (None, "/w/", "/w"),
    ("/a/../..", None, "/"),
])
def test_cwd(rootfs, image_wd, workdir, want) -> None:
    spec = build_config(image(WorkingDir=image_wd), rootfs, workdir=workdir)
    assert spec["process"]["cwd"] == want


@pytest.mark.parametrize("image_wd,workdir,what", [("app", None, "WorkingDir"),
                                                    ("/ok", "rel/dir", "workdir")])
def test_relative_cwd_refused(rootfs, image_wd, workdir, what) -> None:
    with pytest.raises(ImageError, match=f"{what}.*not an absolute path"):
        build_config(image(WorkingDir=image_wd), rootfs, workdir=workdir)


# --- user ------------------------------------------------------------------------------------


@pytest.mark.parametrize("user,want", [
    ("", (0, 0, [10])),
    ("root", (0, 0, [10])),
    ("0", (0, 0, [10])),
    ("alice", (1000, 1000, [10, 29, 44])),  # primary 1000 excluded, dup gid 29 once
    ("1000", (1000, 1000, [10, 29, 44])),   # numeric uid with a passwd entry: docker's groups
    ("bob", (1001, 1001, [29])),
    ("nogroups", (1002, 1002, [])),
    ("4242", (4242, 0, [])),                # numeric uid without entry: gid 0
    ("alice:staff", (1000, 50, [])),         # a group given: no additional gids
    ("alice:77", (1000, 77, [])),
    ("1000:44", (1000, 44, [])),
    ("4242:video", (4242, 44, [])),
    ("4242:4343", (4242, 4343, [])),
    ("alice:", (1000, 1000, [10, 29, 44])),  # empty group part = absent
    (":50", (0, 50, [])),
    ("4294967294", (4294967294, 0, [])),
])
def test_resolve_user_forms(rootfs, user, want) -> None:
    assert resolve_user(rootfs, user) == want


def test_image_user_and_override(rootfs) -> None:
    spec = build_config(image(User="bob"), rootfs)
    assert spec["process"]["user"] == {"uid": 1001, "gid": 1001, "additionalGids": [29]}
    spec = build_config(image(User="bob"), rootfs, user="1000:1000")
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000}
    spec = build_config(image(User="bob"), rootfs, user="")  # explicit "" means root, as --user ""
    assert spec["process"]["user"]["uid"] == 0
    schema.validate(spec, "config")


def test_unknown_user_and_group(rootfs) -> None:
    with pytest.raises(ImageError) as e:
        resolve_user(rootfs, "mallory")
    assert str(e.value) == "unable to find user mallory: no matching entries in passwd file"
    with pytest.raises(ImageError) as e:
        resolve_user(rootfs, "alice:nogroup")
    assert str(e.value) == "unable to find group nogroup: no matching entries in group file"
    with pytest.raises(ImageError, match="unable to find user broken"):
        resolve_user(rootfs, "broken")  # its line is malformed, so skipped
    with pytest.raises(ImageError, match="unable to find user mallory"):
        build_config(image(User="mallory"), rootfs)


@pytest.mark.parametrize("user", ["4294967295", "99999999999", "0:4294967295"])
def test_ids_out_of_range(rootfs, user) -> None:
    with pytest.raises(ImageError, match="out of range"):
        resolve_user(rootfs, user)


def test_no_passwd_or_group_file(tmp_path) -> None:
    bare = str(make_rootfs(tmp_path / "r", passwd=None, group=None))
    assert resolve_user(bare, "") == (0, 0, [])
    assert resolve_user(bare, "123:45") == (123, 45, [])
    with pytest.raises(ImageError, match="unable to find user root"):
        resolve_user(bare, "root")
    with pytest.raises(ImageError, match="unable to find group wheel"):
        resolve_user(bare, "0:wheel")
    nothing = tmp_path / "empty"
    nothing.mkdir()  # not even /etc
    assert resolve_user(str(nothing), "7") == (7, 0, [])


def test_missing_rootfs(tmp_path) -> None:
    with pytest.raises(ImageError, match="image rootfs"):
        resolve_user(str(tmp_path / "absent"), "0")


def test_passwd_not_a_regular_file(tmp_path) -> None:
    r = make_rootfs(tmp_path / "r", passwd=None)
    os.mkfifo(r / "etc" / "passwd")  # opening it blocking would hang forever
    with pytest.raises(ImageError, match="/etc/passwd is not a regular file"):
        resolve_user(str(r), "0")
    (r / "etc" / "passwd").unlink()
    (r / "etc" / "passwd").mkdir()
    with pytest.raises(ImageError, match="/etc/passwd is not a regular file"):
        resolve_user(str(r), "0")


def test_oversized_passwd_refused(tmp_path) -> None:
    r = make_rootfs(tmp_path / "r", passwd=PASSWD + "#" * runspec.MAX_ID_FILE + "\n")
    with pytest.raises(ImageError, match="larger than"):
        resolve_user(str(r), "alice")
    r2 = make_rootfs(tmp_path / "r2", passwd=PASSWD + "#" * (runspec.MAX_ID_FILE - len(PASSWD) - 1) + "\n")
    assert os.path.getsize(r2 / "etc" / "passwd") == runspec.MAX_ID_FILE
    assert resolve_user(str(r2), "alice")[0] == 1000


# --- the rootfs is hostile: symlinks resolve inside it, never on the host ----------------------


HOST_ONLY = "hostonly:x:4242:4343::/:/bin/sh\n"
HOST_GROUP = "hostgrp:x:4444:hostonly,alice\n"


@pytest.fixture
def host_side(tmp_path: Path) -> Path:
    """A directory *outside* the rootfs with a passwd/group only the host can see."""
    d = tmp_path / "hostside"
    d.mkdir()
    (d / "passwd").write_text(HOST_ONLY)
    (d / "group").write_text(HOST_GROUP)
    return d


def escaping(rootfs: Path, host: Path) -> str:
    """A relative link target from rootfs/etc that climbs out to ``host`` on the host."""
    return "../" * 12 + str(host).lstrip("/")


def test_absolute_symlink_to_host_passwd_is_not_followed(tmp_path) -> None:
    r = make_rootfs(tmp_path / "r", passwd=None)
    os.symlink("/etc/passwd", r / "etc" / "passwd")
    assert "root:" in (r / "etc" / "passwd").read_text()  # on the host it reaches the host's file
    # Inside the rootfs /etc/passwd -> /etc/passwd is a loop; the host's root entry is never used.
    for user in ("root", "0", "daemon"):
        with pytest.raises(ImageError) as e:
            resolve_user(str(r), user)
        assert str(e.value) == "image rootfs: openat2 /etc/passwd: too many levels of symbolic links"


@pytest.mark.parametrize("kind", ["passwd-absolute", "passwd-relative", "etc-absolute", "etc-relative"])
def test_symlinks_to_host_files_are_not_followed(tmp_path, host_side, kind) -> None:
    r = make_rootfs(tmp_path / "r", passwd=None, group=None)
    target_rel = escaping(r, host_side)
    if kind == "passwd-absolute":
        os.symlink(host_side / "passwd", r / "etc" / "passwd")
        os.symlink(host_side / "group", r / "etc" / "group")
    elif kind == "passwd-relative":
        os.symlink(target_rel + "/passwd", r / "etc" / "passwd")
        os.symlink(target_rel + "/group", r / "etc" / "group")
    else:
        os.rmdir(r / "etc")
        os.symlink(str(host_side) if kind == "etc-absolute" else target_rel, r / "etc")
    # The fixture is real: followed on the host, the link reaches the host-only user...
    assert "hostonly" in (r / "etc" / "passwd").read_text()
    # ...but resolved as if the rootfs were "/", it does not exist: the user is unknown.
    with pytest.raises(ImageError, match="unable to find user hostonly"):
        resolve_user(str(r), "hostonly")
    with pytest.raises(ImageError, match="unable to find group hostgrp"):
        resolve_user(str(r), "0:hostgrp")
    assert resolve_user(str(r), "4242") == (4242, 0, [])  # not 4343 from the host's entry


@pytest.mark.parametrize("link", ["/lib/db/passwd", "../lib/db/passwd", "../../../../../lib/db/passwd"])
def test_symlinks_inside_the_rootfs_are_followed_in_root(tmp_path, host_side, link) -> None:
    r = make_rootfs(tmp_path / "r", passwd=None)
    (r / "lib" / "db").mkdir(parents=True)
    (r / "lib" / "db" / "passwd").write_text("inside:x:555:556::/:/bin/sh\n")
    os.symlink(link, r / "etc" / "passwd")
    assert resolve_user(str(r), "inside") == (555, 556, [])


def test_symlink_into_host_with_same_path_in_rootfs_reads_the_rootfs_copy(tmp_path, host_side) -> None:
    """etc -> <absolute host dir>: the rootfs's own file at that path is the one read."""
    r = make_rootfs(tmp_path / "r", passwd=None, group=None)
    os.rmdir(r / "etc")
    os.symlink(str(host_side), r / "etc")
    inner = r / str(host_side).lstrip("/")
    inner.mkdir(parents=True)
    (inner / "passwd").write_text("marker:x:777:778::/:/bin/sh\n")
    assert resolve_user(str(r), "marker") == (777, 778, [])
    with pytest.raises(ImageError, match="unable to find user hostonly"):
        resolve_user(str(r), "hostonly")


# --- annotations -----------------------------------------------------------------------------


def test_annotations_from_image_fields(rootfs) -> None:
    doc = image(StopSignal="SIGTERM", ExposedPorts={"8080/tcp": {}, "53/udp": {}, "443/tcp": {}},
                Labels={"com.example": "v", "org.opencontainers.image.title": "t"})
    doc.update({"variant": "v8", "os.version": "10.0", "os.features": ["a", "b"], "author": "me",
                "created": "2024-01-02T03:04:05Z"})
    spec = build_config(doc, rootfs)
    assert spec["annotations"] == {
        "org.opencontainers.image.os": "linux",
        "org.opencontainers.image.architecture": "amd64",
        "org.opencontainers.image.variant": "v8",
        "org.opencontainers.image.os.version": "10.0",
        "org.opencontainers.image.os.features": "a,b",
        "org.opencontainers.image.author": "me",
        "org.opencontainers.image.created": "2024-01-02T03:04:05Z",
        "org.opencontainers.image.stopSignal": "SIGTERM",
        "org.opencontainers.image.exposedPorts": "443/tcp,53/udp,8080/tcp",
        "com.example": "v",
        "org.opencontainers.image.title": "t",
    }
    schema.validate(spec, "config")


def test_labels_take_precedence_over_implicit_annotations(rootfs) -> None:
    labels = {"org.opencontainers.image.os": "label-os", "org.opencontainers.image.stopSignal": "SIGUSR1",
              "org.opencontainers.image.exposedPorts": "1/tcp", "org.opencontainers.image.author": "lab"}
    doc = image(Labels=labels, StopSignal="SIGTERM", ExposedPorts={"80/tcp": {}})
    doc["author"] = "me"
    ann = build_config(doc, rootfs)["annotations"]
    for k, v in labels.items():
        assert ann[k] == v
    assert ann["org.opencontainers.image.architecture"] == "amd64"


def test_absent_fields_give_no_annotations(rootfs) -> None:
    ann = build_config(image(Labels=None, ExposedPorts=None), rootfs)["annotations"]
    assert ann == {"org.opencontainers.image.os": "linux", "org.opencontainers.image.architecture": "amd64"}


# --- volumes ---------------------------------------------------------------------------------


def test_image_volumes_normalized() -> None:
    doc = image(Volumes={"/data": {}, "/data/": {}, "//var//lib/./db": {}, "/a/b/../c": {}, "rel": {},
                         "/../../x": {}})
    assert image_volumes(doc) == ["/a/c", "/data", "/rel", "/var/lib/db", "/x"]
    assert image_volumes(image()) == []
    assert image_volumes(image(Volumes=None)) == []
    assert image_volumes({"os": "linux"}) == []


@pytest.mark.parametrize("key", ["/", "//", "/.", "/a/..", ".", "..", "../etc", "a/../../b", "", "/a\0b"])
def test_image_volumes_refused(key) -> None:
    with pytest.raises(ImageError, match=r"config\.Volumes"):
        image_volumes(image(Volumes={key: {}}))


def test_image_volumes_wrong_type() -> None:
    with pytest.raises(ImageError, match=r"config\.Volumes: expected an object"):
        image_volumes(image(Volumes=["/data"]))
