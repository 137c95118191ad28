"""rootless.py: the user namespace edits of an unprivileged `bundle create`."""

from __future__ import annotations

import os
import pwd

import pytest

from ociruntime.errors import ImageError
from ociruntime.image.rootless import make_rootless, subordinate_range
from ociruntime.spec import schema
from ociruntime.spec.default import default_config

ME = os.geteuid()
NAME = pwd.getpwuid(ME).pw_name


def _subid(tmp_path, text: str):
    p = tmp_path / "subid"
    p.write_text(text)
    return str(p)


def test_subordinate_range_by_name_or_uid(tmp_path) -> None:
    assert subordinate_range(_subid(tmp_path, f"other:1:5\n{NAME}:100000:65536\n"), ME) == (100000, 65536)
    assert subordinate_range(_subid(tmp_path, f"{ME}:200000:1000000\n"), ME) == (200000, 65536)  # capped
    assert subordinate_range(_subid(tmp_path, f"{NAME}:x:1\n{NAME}:0:5\nbroken\n"), ME) is None
    assert subordinate_range(str(tmp_path / "missing"), ME) is None


def _config(user: dict | None = None, net: bool = True) -> dict:
    c = default_config()
    if user:
        c["process"]["user"] = user
    if not net:
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "network"]
    return c


def test_maps_with_a_subordinate_range(tmp_path) -> None:
    sub = _subid(tmp_path, f"{NAME}:300000:65536\n")
    c = _config({"uid": 1500, "gid": 1500, "additionalGids": [2000]})
    make_rootless(c, subuid=sub, subgid=sub)
    assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": ME, "size": 1},
                                         {"containerID": 1, "hostID": 300000, "size": 65536}]
    assert {"type": "user"} in c["linux"]["namespaces"] and {"type": "network"} in c["linux"]["namespaces"]
    assert "resources" not in c["linux"]
    sys_mount = next(m for m in c["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "sysfs"                 # its own netns: a real sysfs
    devpts = next(m for m in c["mounts"] if m["type"] == "devpts")
    assert "gid=5" in devpts["options"]                 # group 5 is mapped
    schema.validate(c)


def test_without_a_range_only_root_is_mapped(tmp_path) -> None:
    none = _subid(tmp_path, "")
    c = _config(net=False)
    make_rootless(c, subuid=none, subgid=none)
    assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": ME, "size": 1}]
    sys_mount = next(m for m in c["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "none" and "rbind" in sys_mount["options"] and "ro" in sys_mount["options"]
    devpts = next(m for m in c["mounts"] if m["type"] == "devpts")
    assert not [o for o in devpts["options"] if o.startswith("gid=")]
    schema.validate(c)


@pytest.mark.parametrize(("user", "msg"), [
    ({"uid": 1500, "gid": 0}, "user 1500"),
    ({"uid": 0, "gid": 1500}, "group 1500"),
    ({"uid": 0, "gid": 0, "additionalGids": [10]}, "group 10"),
])
def test_an_unmapped_image_user_is_refused_with_the_fix(tmp_path, user, msg) -> None:
    none = _subid(tmp_path, "")
    with pytest.raises(ImageError, match=f"{msg} of the image is not mapped.*--user 0"):
        make_rootless(_config(user), subuid=none, subgid=none)
