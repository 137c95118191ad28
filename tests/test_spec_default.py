"""Tests for ociruntime.spec.default: the example config must be valid and match `runc spec`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ociruntime.spec.default import default_config

OFFICIAL_SCHEMA_DIR = (
    Path(__file__).resolve().parents[1].parent / "shared/reference/runtime-spec-v1.3.0-schema/schema"
)
RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)


def _official_validator() -> Any:
    """A validator for the official config schema, its cross-file $refs served by a Registry."""
    if not (OFFICIAL_SCHEMA_DIR / "config-schema.json").is_file():
        pytest.skip(f"official schema not found at {OFFICIAL_SCHEMA_DIR}")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    # The schema files carry no ids and refer to each other by file name ("defs.json#/..."), so
    # each is registered under its file name and the root schema is resolved against "".
    resources = [
        (p.name, Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT4))
        for p in OFFICIAL_SCHEMA_DIR.glob("*.json")
    ]
    registry = Registry().with_resources(resources)
    schema = json.loads((OFFICIAL_SCHEMA_DIR / "config-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def _runc_spec(tmp_path: Path, rootless: bool) -> dict[str, Any]:
    if RUNC is None:
        pytest.skip("runc not installed")
    workdir = tmp_path / ("rootless" if rootless else "root")
    workdir.mkdir()
    subprocess.run([RUNC, "spec", *(["--rootless"] if rootless else [])], cwd=workdir, check=True)
    return json.loads((workdir / "config.json").read_text())


def _shape(value: Any) -> Any:
    """The key structure of a JSON value: dict keys (recursively) and list element shapes."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _runc_is_1_1() -> bool:
    assert RUNC is not None
    out = subprocess.run([RUNC, "--version"], capture_output=True, text=True, check=True).stdout
    return out.startswith("runc version 1.1.")


@pytest.mark.parametrize("rootless", [False, True])
def test_validates_against_official_schema(rootless: bool) -> None:
    validator = _official_validator()
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(default_config(rootless))
    ]
    assert errors == []


def test_official_validator_is_not_vacuous() -> None:
    validator = _official_validator()
    config = default_config()
    config["process"]["rlimits"][0]["type"] = "NOFILE"  # pattern ^RLIMIT_[A-Z]+$
    config["linux"]["namespaces"].append({"type": "bogus"})
    assert len(list(validator.iter_errors(config))) == 2


@pytest.mark.parametrize("rootless", [False, True])
def test_matches_runc_spec(tmp_path: Path, rootless: bool) -> None:
    ours = default_config(rootless)
    theirs = _runc_spec(tmp_path, rootless)
    assert _shape(ours) == _shape(theirs)
    if _runc_is_1_1():
        # Same content, same key order, except the two fields we deliberately change.
        for doc in (ours, theirs):
            del doc["ociVersion"], doc["hostname"]
        assert json.dumps(ours) == json.dumps(theirs)


def test_version_and_hostname() -> None:
    config = default_config()
    assert config["ociVersion"] == "1.3.0"
    assert config["hostname"] == "ociruntime"
    assert config["process"]["args"] == ["sh"]
    assert config["process"]["terminal"] is True
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert [ns["type"] for ns in config["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]


def test_rootless_transformation() -> None:
    config = default_config(rootless=True)
    linux = config["linux"]
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "user"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    sysfs = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert sysfs == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    devpts = next(m for m in config["mounts"] if m["type"] == "devpts")
    assert not any(opt.startswith("gid=") for opt in devpts["options"])


def test_each_call_returns_an_independent_document() -> None:
    first = default_config()
    first["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    first["mounts"][0]["options"] = ["ro"]
    first["linux"]["maskedPaths"].clear()
    second = default_config()
    assert "CAP_SYS_ADMIN" not in second["process"]["capabilities"]["bounding"]
    assert "options" not in second["mounts"][0]
    assert second["linux"]["maskedPaths"] != []
    caps = second["process"]["capabilities"]
    assert caps["bounding"] is not caps["effective"]
    assert json.loads(json.dumps(second)) == second  # JSON-serialisable as is
