"""Our JSON schemas against the official runtime-spec test corpus and real engine configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ociruntime.errors import ConfigError, OCIError
from ociruntime.spec import schema

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OFFICIAL = SHARED / "reference" / "runtime-spec-v1.3.0-schema" / "schema"
CORPUS = SHARED / "corpus" / "real-configs"
# The official schema rejects these three, yet podman sends them every day (corpus README).
OFFICIAL_REJECTS = {"podman-device.json", "podman-privileged.json", "podman-volume.json"}


def official_cases(kind: str, verdict: str) -> list[str]:
    return sorted(p.name for p in (OFFICIAL / "test" / kind / verdict).glob("*.json")) or ["none"]


def load(path: Path) -> object:
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


@pytest.mark.parametrize("kind", ["config", "state", "features"])
def test_official_corpus_present(kind: str) -> None:
    """Guards the parametrised cross-checks below against silently finding no files."""
    if not SHARED.is_dir():
        pytest.skip("/work/shared not available")
    for verdict in ("good", "bad"):
        assert list((OFFICIAL / "test" / kind / verdict).glob("*.json"))


@pytest.mark.parametrize(
    ("kind", "name"),
    [(k, n) for k in ("config", "state", "features") for n in official_cases(k, "good")],
)
def test_official_good_documents_accepted(kind: str, name: str) -> None:
    schema.validate(load(OFFICIAL / "test" / kind / "good" / name), kind)


@pytest.mark.parametrize(
    ("kind", "name"),
    [(k, n) for k in ("config", "state", "features") for n in official_cases(k, "bad")],
)
def test_official_bad_documents_rejected(kind: str, name: str) -> None:
    path = OFFICIAL / "test" / kind / "bad" / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return  # invalid-json.json: rejected before any schema sees it
    with pytest.raises(ConfigError):
        schema.validate(doc, kind)


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.json")) or ["none"])
def test_real_configs_accepted(name: str) -> None:
    schema.validate(load(CORPUS / name), "config")


def test_corpus_includes_the_official_rejects() -> None:
    if not CORPUS.is_dir():
        pytest.skip("/work/shared corpus not available")
    assert OFFICIAL_REJECTS <= {p.name for p in CORPUS.glob("*.json")}


def test_official_schema_really_rejects_those() -> None:
    """The cross-check is meaningful only if the official schema does reject the three."""
    import jsonschema
    import referencing
    from referencing.jsonschema import DRAFT4

    if not OFFICIAL.is_dir() or not CORPUS.is_dir():
        pytest.skip("/work/shared not available")
    resources = [(p.name, DRAFT4.create_resource(json.loads(p.read_text()))) for p in OFFICIAL.glob("*.json")]
    registry = referencing.Registry().with_resources(resources)
    validator = jsonschema.Draft4Validator(registry.contents("config-schema.json"), registry=registry)
    rejected = {n for n in OFFICIAL_REJECTS if not validator.is_valid(json.loads((CORPUS / n).read_text()))}
    assert rejected == OFFICIAL_REJECTS


def minimal(**linux: object) -> dict[str, object]:
    return {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "linux": linux}


def device(mode: object) -> dict[str, object]:
    return {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": mode}


@pytest.mark.parametrize("mode", [0, 0o666, 8576, 0o20666, 0o60660, 0o177777])
def test_device_file_mode_with_type_bits_accepted(mode: int) -> None:
    schema.validate(minimal(devices=[device(mode)]))


@pytest.mark.parametrize("mode", [-1, 0o200000, "0666", 438.0, True])
def test_device_file_mode_malformed_rejected(mode: object) -> None:
    with pytest.raises(ConfigError, match=r"^config\.json: linux\.devices\[0\]\.fileMode: "):
        schema.validate(minimal(devices=[device(mode)]))


def resource_rule(access: object) -> dict[str, object]:
    return minimal(resources={"devices": [{"allow": True, "access": access}]})


@pytest.mark.parametrize("access", ["rwm", "", "rrw", "rwx", "x", "RWM", "wr m"])
def test_device_rule_access_any_string_accepted(access: str) -> None:
    """defs-linux.json DeviceCgroup.access is a plain string (no pattern)."""
    schema.validate(resource_rule(access))


@pytest.mark.parametrize("access", [7, None, ["r"]])
def test_device_rule_access_non_string_rejected(access: object) -> None:
    with pytest.raises(ConfigError, match=r"^config\.json: linux\.resources\.devices\[0\]\.access: "):
        schema.validate(resource_rule(access))


def test_official_schema_agrees_on_device_access() -> None:
    import jsonschema
    import referencing
    from referencing.jsonschema import DRAFT4

    if not OFFICIAL.is_dir():
        pytest.skip("/work/shared not available")
    resources = [(p.name, DRAFT4.create_resource(json.loads(p.read_text()))) for p in OFFICIAL.glob("*.json")]
    registry = referencing.Registry().with_resources(resources)
    validator = jsonschema.Draft4Validator(registry.contents("config-schema.json"), registry=registry)
    for access in ("rwx", "", "x"):
        assert validator.is_valid(resource_rule(access))
    assert not validator.is_valid(resource_rule(7))


@pytest.mark.parametrize(
    "mode", ["private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave", "runbindable"]
)
def test_rootfs_propagation_accepted(mode: str) -> None:
    schema.validate(minimal(rootfsPropagation=mode))


@pytest.mark.parametrize("mode", ["rfoo", "RSLAVE", "", "recursive", 1])
def test_rootfs_propagation_rejected(mode: object) -> None:
    with pytest.raises(ConfigError, match=r"^config\.json: linux\.rootfsPropagation: "):
        schema.validate(minimal(rootfsPropagation=mode))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"ociVersion": "1.0.0", "process": {"cwd": "/", "args": []}},
            "config.json: process.args: [] should be non-empty",
        ),
        (
            minimal(namespaces=[{"type": "pid"}, {"type": "uts"}, {"type": "foo"}]),
            "config.json: linux.namespaces[2].type: 'foo' is not one of ['mount', 'pid', 'network', 'uts',"
            " 'ipc', 'user', 'cgroup', 'time']",
        ),
        ({"root": {"path": "r"}}, "config.json: 'ociVersion' is a required property"),
        ([], "config.json: [] is not of type 'object'"),
        (
            {"ociVersion": "1.0.0", "annotations": {"a.b": 1}},
            'config.json: annotations["a.b"]: 1 is not of type',
        ),
        (
            {"ociVersion": "1.0.0", "process": {"cwd": "/"}},
            "config.json: process: 'args' is a required property",
        ),
        (
            {"ociVersion": "1.0.0", "process": {"cwd": "/", "args": ["a"], "user": {"uid": True}}},
            "config.json: process.user.uid: True is not of type 'integer'",
        ),
    ],
)
def test_error_messages_name_the_path(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        schema.validate(doc)
    assert str(info.value).startswith(message)


def test_long_messages_stay_one_short_line() -> None:
    with pytest.raises(ConfigError) as info:
        schema.validate({"ociVersion": "1.0.0", "process": "x\n" * 5000})
    message = str(info.value)
    assert "\n" not in message
    assert len(message) <= len("config.json: process: ") + schema.MAX_MESSAGE


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        (
            {"ociVersion": "1.0.0", "id": "a", "status": "running", "bundle": "/b", "pid": -1},
            "state.json: pid: -1",
        ),
        (
            {"ociVersion": "1.0.0", "id": "a", "status": "sleeping", "bundle": "/b"},
            "state.json: status: 'sleeping'",
        ),
        (
            {"ociVersion": "1.0.0", "status": "running", "bundle": "/b"},
            "state.json: 'id' is a required property",
        ),
        ({"ociVersion": "1.0.0", "id": "", "status": "running", "bundle": "/b"}, "state.json: id: "),
    ],
)
def test_state_rejections(doc: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        schema.validate(doc, "state")
    assert str(info.value).startswith(fragment)


def test_state_paused_accepted() -> None:
    schema.validate({"ociVersion": "1.0.2", "id": "a", "status": "paused", "bundle": "/b", "pid": 1}, "state")


def test_features_rejections() -> None:
    with pytest.raises(ConfigError, match=r"^features: linux\.namespaces\[0\]: 'bogus' is not one of"):
        schema.validate(
            {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"namespaces": ["bogus"]}},
            "features",
        )


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        schema.validate({}, "nope")


def test_validator_is_cached() -> None:
    assert schema.get_validator("config") is schema.get_validator("config")
    assert schema.get_validator("state") is not schema.get_validator("config")


def test_our_schemas_are_valid_draft_2020_12() -> None:
    import jsonschema

    files = sorted((REPO / "schemas").glob("*.json"))
    assert {f.name for f in files} >= {"config-schema.json", "state-schema.json", "features-schema.json"}
    for path in files:
        contents = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(contents)
        assert contents["$id"].endswith("/" + path.name)


def test_schema_dir_fallback_to_sys_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = tmp_path / "prefix" / "schemas"
    shutil.copytree(REPO / "schemas", installed)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(schema, "__file__", str(tmp_path / "no" / "pkg" / "spec" / "schema.py"))
    assert schema.find_schema_dir() == str(installed)


def test_schema_dir_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(schema, "__file__", str(tmp_path / "no" / "pkg" / "spec" / "schema.py"))
    with pytest.raises(OCIError, match="json schemas not found"):
        schema.find_schema_dir()


def test_importing_spec_modules_does_not_import_jsonschema() -> None:
    code = (
        "import sys; import ociruntime.spec.schema, ociruntime.spec.loader, ociruntime.spec.semantic; "
        "bad = [m for m in ('jsonschema', 'referencing', 'pyroute2', 'pyseccomp') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_config_keys_are_case_sensitive() -> None:
    """README: runc's Go decoder folds case ("pagesize" fills pageSize); the spec's keys do not."""
    with pytest.raises(ConfigError, match=r"hugepageLimits\[0\]: 'pageSize' is a required property"):
        schema.validate(minimal(resources={"hugepageLimits": [{"pagesize": "2MB", "limit": 0}]}))
