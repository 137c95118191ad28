"""`spec` and `features` output: valid against the official schemas (and ours); runc's shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ociruntime.spec import schema as our_schema

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared/reference/runtime-spec-v1.3.0-schema/schema"


def official(kind: str) -> Any:
    if not (OFFICIAL / kind).is_file():
        pytest.skip("official schemas not available (../shared absent)")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resources(
        (p.name, Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT4))
        for p in OFFICIAL.glob("*.json"))
    return jsonschema.Draft4Validator(json.loads((OFFICIAL / kind).read_text()), registry=registry)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-m", "ociruntime", *args], capture_output=True,
                          cwd=cwd, timeout=60)


def test_features_valid_and_honest() -> None:
    p = cli("features")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    official("features-schema.json").validate(doc)
    our_schema.validate(doc, "features")
    assert doc["ociVersionMax"] == "1.3.0"
    assert set(doc["linux"]["namespaces"]) == {"pid", "network", "mount", "ipc", "uts", "user", "cgroup",
                                               "time"}
    assert "rro" in doc["mountOptions"] and "bind" in doc["mountOptions"]
    assert doc["linux"]["cgroup"]["systemd"] is True  # tested in the systemd guests
    # The user manager's driver: tested in the systemd guest (integration/test_rootless_systemd.py).
    assert doc["linux"]["cgroup"]["systemdUser"] is True
    assert "SCMP_ACT_NOTIFY" in doc["linux"]["seccomp"]["actions"]


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_writes_valid_config(tmp_path: Path, rootless: bool) -> None:
    args = ["spec", "--bundle", str(tmp_path)] + (["--rootless"] if rootless else [])
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "config.json").read_text())
    official("config-schema.json").validate(doc)
    our_schema.validate(doc, "config")
    assert doc["process"]["terminal"] is True and doc["root"] == {"path": "rootfs", "readonly": True}
    p = cli(*args)
    assert p.returncode == 1 and b"exists" in p.stderr  # never overwrites


def test_spec_in_cwd(tmp_path: Path) -> None:
    assert cli("spec", cwd=tmp_path).returncode == 0
    assert (tmp_path / "config.json").is_file()


def test_help_and_usage() -> None:
    p = cli("--help")
    assert p.returncode == 0 and b"create" in p.stdout and b"--root" in p.stdout
    p = cli("create", "--help")
    assert p.returncode == 0 and b"--console-socket" in p.stdout
    p = cli()
    assert p.returncode == 1
    p = cli("create")
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1
    p = cli("--log-format", "xml", "list")
    assert p.returncode == 1 and b"log format" in p.stderr


def _record(root: Path, cid: str, annotations: dict[str, str]) -> None:
    from ociruntime.state.proc import start_time
    from ociruntime.state.store import Record, Store

    with Store(str(root)).create(cid) as cdir:
        cdir.save(Record(id=cid, bundle=f"/b/{cid}", rootfs=f"/b/{cid}/rootfs",
                         created="2026-01-02T03:04:05.5Z", pid=os.getpid(),
                         pid_start=start_time(os.getpid()) or 0, owner="root",
                         oci_version="1.3.0", annotations=annotations))


def test_list_json_is_runc_s_encoding(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = cli("--root", str(root), "list", "--format", "json")
    # no containers: runc encodes a nil slice
    assert p.returncode == 0 and p.stdout == b"null\n", p.stderr
    _record(root, "c1", {})
    _record(root, "c2", {"org.example/a<b>": "x&y"})
    p = cli("--root", str(root), "list", "--format", "json")
    assert p.returncode == 0, p.stderr
    pid = os.getpid()
    assert p.stdout.decode() == (
        f'[{{"ociVersion":"1.3.0","id":"c1","pid":{pid},"status":"running","bundle":"/b/c1",'
        '"rootfs":"/b/c1/rootfs","created":"2026-01-02T03:04:05.5Z","owner":"root"},'
        f'{{"ociVersion":"1.3.0","id":"c2","pid":{pid},"status":"running","bundle":"/b/c2",'
        '"rootfs":"/b/c2/rootfs","created":"2026-01-02T03:04:05.5Z",'
        '"annotations":{"org.example/a\\u003cb\\u003e":"x\\u0026y"},"owner":"root"}]\n')
