"""The fast schema checker (ociruntime.spec.fastcheck) must give jsonschema's verdict, always.

jsonschema here is the validator that :mod:`ociruntime.spec.schema` builds (draft 2020-12 with
the strict ``integer``), so "equal verdicts" is exactly the property ``schema.validate`` relies
on when it skips jsonschema for documents the fast checker accepts.
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ociruntime.errors import ConfigError, OCIError
from ociruntime.spec import fastcheck, schema
from ociruntime.spec.default import default_config

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
SHARED = REPO.parent / "shared"
OFFICIAL_TESTS = SHARED / "reference" / "runtime-spec-v1.3.0-schema" / "schema" / "test"
CORPUS = SHARED / "corpus" / "real-configs"
KINDS = ("config", "state", "features")

# Keywords whose value is a schema, a list of schemas, or a map of name -> schema.
SCHEMA_VALUED = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def jsonschema_valid(doc: object, kind: str) -> bool:
    return bool(schema.get_validator(kind).is_valid(doc))


def assert_same_verdict(doc: object, kind: str, what: str) -> bool:
    verdict = jsonschema_valid(doc, kind)
    assert fastcheck.is_valid(doc, kind) is verdict, f"{what}: jsonschema says valid={verdict}"
    return verdict


def schema_keywords(node: object) -> Iterator[str]:
    """Every keyword used at a schema position of ``node`` (not inside enum/const/required values)."""
    if not isinstance(node, dict):
        return
    yield from node
    for key, value in node.items():
        if key in SCHEMA_VALUED:
            yield from schema_keywords(value)
        elif key in SCHEMA_LISTS:
            for sub in value:
                yield from schema_keywords(sub)
        elif key in SCHEMA_MAPS:
            for sub in value.values():
                yield from schema_keywords(sub)


# ---------------------------------------------------------------- the keyword subset


def test_every_keyword_in_our_schemas_is_supported() -> None:
    used = {kw for path in SCHEMAS.glob("*.json") for kw in schema_keywords(json.loads(path.read_text()))}
    # the walk really reached the nested definitions
    assert {"$ref", "propertyNames", "pattern", "enum", "minItems", "minLength", "required"} <= used
    assert used <= fastcheck.SUPPORTED_KEYWORDS, used - fastcheck.SUPPORTED_KEYWORDS


def test_every_definition_of_every_file_compiles() -> None:
    """Also the $defs that no root references today (the walk above reads, this compiles)."""
    files = list(SCHEMAS.glob("*.json"))
    defs = sum(len(json.loads(p.read_text()).get("$defs", {})) for p in files)
    assert fastcheck.Compiler(SCHEMAS).compile_everything() == len(files) + defs


def edited_schemas(tmp_path: Path, file: str, pointer: list[str], edit: dict[str, Any]) -> Path:
    """A copy of our schema dir with ``edit`` merged into one subschema."""
    directory = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, directory)
    doc = json.loads((directory / file).read_text())
    node = doc
    for key in pointer:
        node = node[key]
    node.update(edit)
    (directory / file).write_text(json.dumps(doc))
    return directory


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        ({"format": "uri"}, "unsupported keyword(s) format"),
        ({"multipleOf": 2}, "unsupported keyword(s) multipleOf"),
        ({"unevaluatedProperties": False}, "unsupported keyword(s) unevaluatedProperties"),
        ({"dependentRequired": {"a": ["b"]}}, "unsupported keyword(s) dependentRequired"),
        ({"contains": {"type": "string"}}, "unsupported keyword(s) contains"),
        ({"minProperties": 1}, "unsupported keyword(s) minProperties"),
        ({"$anchor": "x"}, "unsupported keyword(s) $anchor"),
        ({"$dynamicRef": "#x"}, "unsupported keyword(s) $dynamicRef"),
        ({"maximun": 3}, "unsupported keyword(s) maximun"),
        ({"$id": "https://example.com/x.json"}, "$id below the root"),
        ({"type": "uint"}, "unknown type 'uint'"),
        ({"type": []}, "type must not be an empty list"),
        ({"pattern": "("}, "bad pattern"),
        ({"minimum": "0"}, "minimum must be a number"),
        ({"items": [{"type": "string"}]}, "items must be a schema"),
        ({"enum": []}, "enum must be a non-empty list"),
        ({"$ref": "nowhere.json#/$defs/x"}, "$ref to unknown schema"),
        ({"$ref": "#/$defs/missing"}, "$ref target does not exist"),
        ({"$ref": "#anchor"}, "anchors are not supported"),
        ({"$ref": "defs-linux.json"}, "to the root of a file that declares $schema"),
        ({"then": {"minimum": 1}}, "then/else without if"),
        ({"properties": {"a": {"$schema": fastcheck.DRAFT}}}, "$schema below the root"),
    ],
)
def test_unsupported_schema_raises_at_compile_time(
    tmp_path: Path, edit: dict[str, Any], fragment: str
) -> None:
    # defs.json#/$defs/uint32 is referenced (through IDMapping) from the config root.
    directory = edited_schemas(tmp_path, "defs.json", ["$defs", "uint32"], edit)
    with pytest.raises(OCIError) as info:
        fastcheck.compile_kind("config", directory, eager=True)
    assert fragment in str(info.value)
    assert "defs.json#/$defs/uint32" in str(info.value)


def test_unsupported_keyword_in_an_unreferenced_definition_is_found(tmp_path: Path) -> None:
    directory = edited_schemas(tmp_path, "defs.json", ["$defs"], {"Spare": {"format": "uri"}})
    fastcheck.compile_kind("config", directory, eager=True)  # not reachable from the root ...
    with pytest.raises(OCIError, match=r"defs\.json#/\$defs/Spare: unsupported keyword\(s\) format"):
        fastcheck.Compiler(directory).compile_everything()  # ... but the test above would see it


def test_other_draft_refused(tmp_path: Path) -> None:
    directory = edited_schemas(
        tmp_path, "config-schema.json", [], {"$schema": "http://json-schema.org/draft-07/schema#"}
    )
    with pytest.raises(OCIError, match=r"is not https://json-schema\.org/draft/2020-12/schema"):
        fastcheck.compile_kind("config", directory)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        fastcheck.is_valid({}, "nope")


def test_compiled_once_per_kind() -> None:
    fastcheck.is_valid({}, "state")
    first = fastcheck._checks["state"]
    fastcheck.is_valid({}, "state")
    assert fastcheck._checks["state"] is first


# ---------------------------------------------------------------- keyword semantics, one by one

VALUES: list[object] = [
    None, True, False, 0, 1, -1, 2, 5, 1.0, 1.5, -0.5, 2**64, "", "a", "ab", "abc", "x\n", "é", "a\x00",
    [], [1], [1, 2], [1, 1], [1, 1.0], [1, True], [True, True], [0, False], ["a", 1], [{"a": 1}, {"a": 1}],
    [[1], [True]], [{"a": 1}, {"a": True}], {}, {"a": 1}, {"a": True}, {"a": "x", "b": 2},
    {"x1": 1, "y": "s"}, {"x1": "s"}, {"": 1}, {"ab": None}, {"a": [1]},
]

# (name, schema) for every supported keyword, including those our schemas do not use today.
KEYWORD_SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("type-each", {"anyOf": [{"type": t} for t in ("null", "boolean", "integer")]}),
    ("type-number", {"type": "number"}),
    ("type-list", {"type": ["string", "array", "object"]}),
    ("integer-bounds", {"type": "integer", "minimum": 0, "maximum": 2}),
    ("untyped-bounds", {"minimum": 0, "maximum": 2}),
    ("exclusive", {"exclusiveMinimum": 0, "exclusiveMaximum": 2}),
    ("float-bounds", {"type": "number", "minimum": 0.5, "maximum": 1.5}),
    ("string-lengths", {"minLength": 1, "maxLength": 2}),
    ("pattern", {"pattern": "^[a-b]+$"}),
    ("pattern-unanchored", {"type": "string", "pattern": "b"}),
    ("enum-strings", {"enum": ["a", "ab"]}),
    ("enum-mixed", {"enum": [1, True, None, [1], {"a": 1}, "a"]}),
    ("enum-false", {"enum": [False, 0.0]}),
    ("const-1", {"const": 1}),
    ("const-true", {"const": True}),
    ("const-list", {"const": [1, 2]}),
    ("array-lengths", {"minItems": 1, "maxItems": 2}),
    ("items", {"items": {"type": "integer"}}),
    ("items-false", {"items": False}),
    ("prefix", {"prefixItems": [{"const": 1}, {"type": "integer"}], "items": False}),
    ("prefix-open", {"prefixItems": [{"type": "integer"}]}),
    ("unique", {"uniqueItems": True}),
    ("not-unique", {"type": "array", "uniqueItems": False}),
    ("required", {"required": ["a"]}),
    ("properties", {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}),
    ("additional-false", {"properties": {"a": {}}, "additionalProperties": False}),
    ("additional-schema", {"properties": {"a": {}}, "additionalProperties": {"type": "string"}}),
    ("pattern-properties", {"patternProperties": {"^x": {"type": "integer"}, "y": {"type": "string"}}}),
    (
        "pattern-and-additional",
        {
            "properties": {"a": {}},
            "patternProperties": {"^x": {"type": "integer"}},
            "additionalProperties": False,
        },
    ),
    ("property-names", {"propertyNames": {"minLength": 1, "maxLength": 1}}),
    ("all-of", {"allOf": [{"type": "integer"}, {"minimum": 1}]}),
    ("any-of", {"anyOf": [{"type": "string"}, {"minimum": 2}]}),
    ("one-of", {"oneOf": [{"type": "integer"}, {"minimum": 1}]}),
    ("not", {"not": {"type": "string"}}),
    ("if-then-else", {"if": {"type": "integer"}, "then": {"minimum": 1}, "else": {"type": "string"}}),
    ("if-then", {"if": {"type": "string"}, "then": {"minLength": 2}}),
    ("true-false", {"properties": {"a": True, "b": False}}),
    ("ref-local", {"$ref": "#/$defs/small", "type": "integer"}),
    ("ref-definitions", {"$ref": "#/definitions/small"}),
    ("ref-escaped", {"$ref": "#/$defs/a~1b%25"}),
    ("ref-recursive", {"$ref": "#/$defs/tree"}),
    ("ref-other-file", {"$ref": "other.json#/$defs/s"}),
    ("ref-other-root", {"items": {"$ref": "other.json"}}),
]

DEFS = {
    "small": {"maximum": 1},
    "a/b%": {"type": "array"},
    "tree": {"type": ["integer", "array", "object"], "items": {"$ref": "#/$defs/tree"},
             "additionalProperties": {"$ref": "#/$defs/tree"}},
}


@pytest.mark.parametrize(("name", "body"), KEYWORD_SCHEMAS, ids=[n for n, _ in KEYWORD_SCHEMAS])
def test_keyword_semantics_match_jsonschema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: dict[str, Any]
) -> None:
    base = "https://ociruntime.local/test/"
    root = {"$schema": fastcheck.DRAFT, "$id": base + "config-schema.json", "$defs": DEFS,
            "definitions": {"small": {"maximum": 1}}, **body}
    # No "$schema" here: jsonschema's evolve() switches to the plain draft 2020-12 class at a
    # subschema that carries one, losing the strict integer.  Our files are only ever entered below
    # their root, so production is not affected; fastcheck stays strict either way.
    other = {"$id": base + "other.json", "type": "integer", "$defs": {"s": {"maxLength": 1}}}
    (tmp_path / "config-schema.json").write_text(json.dumps(root))
    (tmp_path / "other.json").write_text(json.dumps(other))
    fast = fastcheck.compile_kind("config", tmp_path)
    # the production jsonschema set-up (strict integer, registry by $id), on this directory
    monkeypatch.setattr(schema, "find_schema_dir", lambda: tmp_path)
    slow = schema._build_validator("config")
    verdicts = set()
    for value in VALUES:
        expected = slow.is_valid(value)
        assert fast(value) is expected, f"{name}: {value!r}: jsonschema says valid={expected}"
        verdicts.add(expected)
    assert verdicts == {True, False}, f"{name}: the values do not exercise both verdicts"


def test_unique_items_is_exact_where_jsonschema_sorts() -> None:
    """jsonschema's uniq() compares only sort-neighbours; [[1], [True], [1]] has a real duplicate."""
    assert not fastcheck._unique([[1], [True], [1]])
    assert fastcheck._unique([[1], [True]])


# ---------------------------------------------------------------- real documents


def official_documents() -> list[tuple[str, str, str]]:
    return [
        (kind, verdict, path.name)
        for kind in KINDS
        for verdict in ("good", "bad")
        for path in sorted((OFFICIAL_TESTS / kind / verdict).glob("*.json"))
    ] or [("config", "good", "absent")]


@pytest.mark.parametrize(("kind", "verdict", "name"), official_documents())
def test_official_test_documents(kind: str, verdict: str, name: str) -> None:
    path = OFFICIAL_TESTS / kind / verdict / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        pytest.skip("not JSON (invalid-json.json): rejected before any schema")
    assert_same_verdict(doc, kind, str(path))


def corpus_names() -> list[str]:
    return sorted(p.name for p in CORPUS.glob("*.json")) or ["absent"]


@pytest.mark.parametrize("name", corpus_names())
def test_real_configs(name: str) -> None:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    assert assert_same_verdict(json.loads(path.read_text()), "config", name)


def own_documents() -> dict[str, tuple[str, Any]]:
    from ociruntime.features import features
    from ociruntime.state.store import Record

    record = Record(id="c1", bundle="/b", rootfs="/b/rootfs", created="2024-01-01T00:00:00Z", pid=42,
                    annotations={"org.example/key": "v"})
    return {
        "default": ("config", default_config()),
        "default-rootless": ("config", default_config(rootless=True)),
        "kitchen-sink": ("config", kitchen_sink()),
        "features": ("features", json.loads(json.dumps(features()))),
        "state-running": ("state", record.oci_state("running")),
        "state-stopped": ("state", record.oci_state("stopped")),
    }


def kitchen_sink() -> dict[str, Any]:
    """A valid config using every property our config schemas define (for the mutants to reach)."""
    ids = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    hook = {"path": "/bin/true", "args": ["true"], "env": ["A=b"], "timeout": 5}
    dev = {"major": 8, "minor": 0}
    return {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs", "readonly": False},
        "mounts": [
            {
                "destination": "/data",
                "source": "/srv",
                "type": "bind",
                "options": ["rbind"],
                "uidMappings": ids,
                "gidMappings": ids,
            }
        ],
        "process": {
            "terminal": True,
            "consoleSize": {"height": 24, "width": 80},
            "cwd": "/",
            "env": ["PATH=/bin"],
            "args": ["sh"],
            "commandLine": "sh",
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
            "apparmorProfile": "p",
            "noNewPrivileges": True,
            "oomScoreAdj": -999,
            "capabilities": {
                k: ["CAP_CHOWN"] for k in ("effective", "bounding", "inheritable", "permitted", "ambient")
            },
            "scheduler": {
                "policy": "SCHED_DEADLINE",
                "nice": -5,
                "priority": 1,
                "flags": ["SCHED_FLAG_RECLAIM"],
                "runtime": 10,
                "deadline": 20,
                "period": 30,
            },
            "selinuxLabel": "l",
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "execCPUAffinity": {"initial": "0-3,5", "final": "1"},
            "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [5, 10], "username": "u"},
        },
        "hostname": "h",
        "domainname": "d",
        "hooks": {
            k: [hook]
            for k in (
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop",
            )
        },
        "annotations": {"a.b": "c"},
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"}],
            "uidMappings": ids,
            "gidMappings": ids,
            "timeOffsets": {
                "boottime": {"secs": -10, "nanosecs": 5},
                "monotonic": {"secs": 1, "nanosecs": 0},
            },
            "devices": [
                {
                    "type": "c",
                    "path": "/dev/fuse",
                    "fileMode": 8576,
                    "major": 10,
                    "minor": 229,
                    "uid": 0,
                    "gid": 0,
                }
            ],
            "netDevices": {"eth0": {"name": "eth1"}},
            "cgroupsPath": "/c",
            "resources": {
                "devices": [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
                "memory": {
                    "limit": 1 << 30,
                    "reservation": 1 << 29,
                    "swap": -1,
                    "kernel": 0,
                    "kernelTCP": 0,
                    "swappiness": 60,
                    "disableOOMKiller": False,
                    "useHierarchy": True,
                    "checkBeforeUpdate": True,
                },
                "cpu": {
                    "shares": 1024,
                    "quota": -1,
                    "burst": 0,
                    "period": 100000,
                    "realtimeRuntime": 0,
                    "realtimePeriod": 0,
                    "cpus": "0-1",
                    "mems": "0",
                    "idle": 0,
                },
                "blockIO": {
                    "weight": 500,
                    "leafWeight": 300,
                    "weightDevice": [{**dev, "weight": 10, "leafWeight": 10}],
                    **{
                        k: [{**dev, "rate": 1000}]
                        for k in (
                            "throttleReadBpsDevice",
                            "throttleWriteBpsDevice",
                            "throttleReadIOPSDevice",
                            "throttleWriteIOPSDevice",
                        )
                    },
                },
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 1}]},
                "pids": {"limit": 100},
                "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
                "unified": {"memory.high": "max"},
            },
            "intelRdt": {
                "closID": "g",
                "schemata": ["L3:0=f"],
                "l3CacheSchema": "L3:0=f",
                "memBwSchema": "MB:0=70",
                "enableMonitoring": True,
            },
            "sysctl": {"net.core.somaxconn": "1024"},
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "listenerPath": "/l",
                "listenerMetadata": "m",
                "syscalls": [
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ALLOW",
                        "errnoRet": 1,
                        "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
            "rootfsPropagation": "rslave",
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "mountLabel": "m",
            "personality": {"domain": "LINUX32", "flags": []},
            "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
        },
        "solaris": {},
        "windows": {},
        "vm": {},
        "zos": {},
        "freebsd": {
            "devices": [{}],
            "jail": {
                "host": "new",
                "vnet": "inherit",
                "ip4": "disable",
                "ip6": "new",
                "sysvmsg": "new",
                "sysvsem": "new",
                "sysvshm": "new",
                "allow": {},
            },
        },
    }


@pytest.mark.parametrize("name", list(own_documents()))
def test_our_own_documents(name: str) -> None:
    kind, doc = own_documents()[name]
    assert assert_same_verdict(doc, kind, name)


# ---------------------------------------------------------------- mutated documents

PALETTE: list[object] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, 7, 8, 255, 256, 511, 512, 1000, 1001, -1000, -1001, 65535, 65536,
    4194304, 4194305, 999999999, 1000000000, 2**31 - 1, -(2**31), -(2**31) - 1, 4294967294, 4294967295,
    4294967296, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, "", "x", "a\x00b", "x" * 5000,
    "1.0.0", "1.0.0\n", "01.0.0", "1.2.3-rc.1+build.5", "rslave", "RSLAVE", "RLIMIT_NOFILE",
    "RLIMIT_NOFILE\n", "RLIMIT_nofile", "rwm", "rwx", "SCMP_ACT_ALLOW", "SCMP_ACT_allow", "c", "a", "pid",
    "bogus", "2MB", "0MB", "MB:0=70", "MB:\n", "CAP_SYS_ADMIN", "cap_sys_admin", "0-3,5", "0-3;5", "running",
    "paused", [], {}, ["x"], [1], [""], {"a": "b"}, {"": "b"}, {"a": 1},
]


# Edges of the ranges our schemas use (int32, uint16, uint32, uint64, ID, FileMode, pid, ...).
BOUNDS: list[int] = [
    -1, 0, 1, 5, 6, 7, 8, 255, 256, 511, 512, 1000, 1001, -1000, -1001, 65535, 65536, 4194304, 4194305,
    999999999, 1000000000, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 2, 2**32 - 1, 2**32,
    2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64,
]


def children(node: object) -> list[tuple[Any, object]]:
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, list):
        return list(enumerate(node))
    return []


def random_node(rng: random.Random, doc: object) -> tuple[tuple[Any, ...], object]:
    """A random walk down from the root, so a small section (rlimits, user) is hit about as often
    as the hundreds of entries of a seccomp profile."""
    path: tuple[Any, ...] = ()
    node = doc
    while True:
        kids = children(node)
        if not kids or (path and rng.random() < 0.25):
            return path, node
        key, node = rng.choice(kids)
        path = (*path, key)


def replace(doc: Any, path: tuple[Any, ...], value: object) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def string_variant(rng: random.Random, text: str) -> str:
    return rng.choice([
        "", text + "\n", text + "\x00", text * 200 or "y" * 5000, text.upper(), text.lower(), text[:-1],
        "\n" + text, text + "x", rng.choice([p for p in PALETTE if isinstance(p, str)]),
    ])


def int_variant(rng: random.Random, number: int) -> object:
    return rng.choice([
        number == 1 if rng.random() < 0.5 else bool(number), -number, -number - 1, number + 1, number - 1,
        float(number), number * 2**32, rng.choice(BOUNDS), rng.choice(BOUNDS), rng.choice(PALETTE),
    ])


def mutate_once(rng: random.Random, doc: Any) -> str:
    """Apply one random edit to ``doc`` in place; return what was done."""
    path, value = random_node(rng, doc)
    op = rng.choice(["swap", "drop", "rename", "tweak", "tweak", "tweak", "append", "empty", "addkey"])
    if op in ("drop", "rename", "addkey") and isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        if op == "drop":
            del value[key]
            return f"drop {path}+{key!r}"
        # a sibling's value keeps the type right, so only the name is at fault
        new_key = rng.choice(["", key.upper(), key + "x", "x"])
        value[new_key] = value.pop(key) if op == "rename" else copy.deepcopy(value[key])
        return f"{op} {path}+{key!r} -> {new_key!r}"
    if not path:
        doc[rng.choice(["", "x", "ociVersion"])] = rng.choice(PALETTE)
        return "root key"
    if op == "tweak" and type(value) is int:
        replace(doc, path, new := int_variant(rng, value))
        return f"int {path} {new!r}"
    if op == "tweak" and isinstance(value, str):
        replace(doc, path, new := string_variant(rng, value))
        return f"str {path} {new[:20]!r}"
    if op == "append" and isinstance(value, list):
        extra = copy.deepcopy(rng.choice(value)) if value and rng.random() < 0.5 else rng.choice(PALETTE)
        value.append(extra)
        return f"append {path}"
    if op == "empty" and isinstance(value, dict | list):
        value.clear()
        return f"empty {path}"
    replace(doc, path, new := copy.deepcopy(rng.choice(PALETTE)))
    return f"swap {path} {str(new)[:20]!r}"


def base_documents() -> dict[str, tuple[str, Any]]:
    docs = {name: own for name, own in own_documents().items()}
    for kind in KINDS:
        for path in sorted((OFFICIAL_TESTS / kind / "good").glob("*.json")):
            docs[f"official-{kind}-{path.name}"] = (kind, json.loads(path.read_text()))
    for path in sorted(CORPUS.glob("*.json")):
        docs[path.name] = ("config", json.loads(path.read_text()))
    return docs


MUTANTS_PER_DOCUMENT = 30


@pytest.mark.parametrize("name", list(base_documents()))
def test_mutated_documents(name: str) -> None:
    kind, original = base_documents()[name]
    rng = random.Random(f"fastcheck:{name}")  # str seeds are hashed deterministically (sha512)
    verdicts = []
    for index in range(MUTANTS_PER_DOCUMENT):
        doc = copy.deepcopy(original)
        edits = [mutate_once(rng, doc) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        verdicts.append(assert_same_verdict(doc, kind, f"{name} mutant {index}: {edits}"))
    # most edits break the document; a checker answering "invalid" to everything would fail below
    assert verdicts.count(False) >= MUTANTS_PER_DOCUMENT // 3


def json_type(value: object) -> str:
    return type(value).__name__ if not isinstance(value, bool) else "bool"


def every_path(node: object, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], object]]:
    for key, value in children(node):
        yield (*path, key), value
        yield from every_path(value, (*path, key))


def test_every_member_of_the_kitchen_sink() -> None:
    """Systematically, for each member: another type, an edge value; in objects also removed/renamed."""
    original = kitchen_sink()
    rng = random.Random("fastcheck:kitchen-sink:systematic")
    verdicts = []
    for path, value in every_path(original):
        others = [p for p in PALETTE if json_type(p) != json_type(value)]
        if type(value) is int:
            edge: object = int_variant(rng, value)
        elif isinstance(value, str):
            edge = string_variant(rng, value)
        else:
            edge = rng.choice(PALETTE)
        for new in (rng.choice(others), edge):
            doc = copy.deepcopy(original)
            replace(doc, path, copy.deepcopy(new))
            verdicts.append(assert_same_verdict(doc, "config", f"{path} = {str(new)[:40]!r}"))
        if isinstance(path[-1], str):
            for renamed in (None, ""):  # removed, then renamed to the empty name
                doc = copy.deepcopy(original)
                parent: Any = doc
                for key in path[:-1]:
                    parent = parent[key]
                moved = parent.pop(path[-1])
                if renamed is not None:
                    parent[renamed] = moved
                verdicts.append(assert_same_verdict(doc, "config", f"{path} renamed to {renamed!r}"))
    assert len(verdicts) > 400
    assert 0 < verdicts.count(True) < verdicts.count(False)


def test_mutants_cover_both_verdicts() -> None:
    """Across all documents, the mutants must include valid ones too (not only trivial rejects)."""
    valid = 0
    for name, (kind, original) in base_documents().items():
        rng = random.Random(f"fastcheck:{name}")
        for _ in range(MUTANTS_PER_DOCUMENT):
            doc = copy.deepcopy(original)
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                mutate_once(rng, doc)
            valid += fastcheck.is_valid(doc, kind)
    assert valid >= 50


# ---------------------------------------------------------------- wiring into schema.validate


def test_validate_accepts_without_jsonschema() -> None:
    code = (
        "import sys\n"
        "from ociruntime.spec.default import default_config\n"
        "from ociruntime.spec import schema\n"
        "schema.validate(default_config(), 'config')\n"
        "schema.validate(default_config(rootless=True), 'config')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'referencing'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_validate_rejection_still_explained_by_jsonschema() -> None:
    code = (
        "import sys\n"
        "from ociruntime.spec import schema\n"
        "try:\n"
        "    schema.validate({'ociVersion': '1.0.0', 'process': {'cwd': '/', 'args': []}}, 'config')\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
        "print('jsonschema' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.splitlines() == ["config.json: process.args: [] should be non-empty", "True"]


def test_disagreement_is_an_error_never_an_acceptance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastcheck, "is_valid", lambda doc, kind: False)
    with pytest.raises(ConfigError, match=r"^config\.json: internal error: the fast schema check rejects"):
        schema.validate(default_config(), "config")


def _pattern_samples() -> list[str]:
    rnd = random.Random(7)
    alphabet = ["0", "1", "9", "01", ".", "-", "+", "\n", "A", "Z", "a", "z", "_", "RLIMIT_", "é",
                "٣", " ", "MB:", "MB:0=70", "\n\n", "1.0.0", "1.2.3-rc.1", "+build.5", "RLIMIT_NOFILE", "x"]
    fixed = ["", "\n", "1.0.0", "1.0.0\n", "1.0.0\n\n", "01.0.0", "1.0", "1.0.0.0", "1.0.0-", "1.0.0+",
             "1.0.0-a+b", "1.0.0-a-b.c+d.e-f", "1.0.0+a+b", "1.0.0-+a", "10.20.30-rc.1+x", "1.0.0 ",
             "RLIMIT_", "RLIMIT_A", "RLIMIT_A\n", "RLIMIT_A\n\n", "RLIMIT_a", "xRLIMIT_A", "RLIMIT_AB1",
             "٣.0.0", "1.0.0-é", "RLIMIT_É"]
    return fixed + ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6))) for _ in range(4000)]


@pytest.mark.parametrize("pattern", [fastcheck.RLIMIT_PATTERN, fastcheck.SEMVER_PATTERN,
                                     fastcheck.MEMBW_PATTERN])
def test_hand_written_matchers_agree_with_re(pattern: str) -> None:
    matcher = fastcheck._MATCHERS[pattern]
    wrong = [s for s in _pattern_samples() if matcher(s) != (re.search(pattern, s) is not None)]
    assert not wrong
    assert any(matcher(s) for s in _pattern_samples())  # the samples reach both answers


def test_schema_patterns_with_matchers_are_the_schema_files_own() -> None:
    # The matchers are keyed by the exact pattern text: a schema edit falls back to `re`.
    texts = {p for *_, doc in schema.read_schemas(SCHEMAS) for p in _patterns(doc)}
    assert set(fastcheck._MATCHERS) <= texts


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []
