"""The protobuf wire codec and websocket framing of integration/cri_client.py, against bytes
computed by hand from the protobuf encoding rules (varint keys ``number << 3 | wire type``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "integration" / "cri_client.py"
_spec = importlib.util.spec_from_file_location("cri_client", _path)
assert _spec and _spec.loader
cri = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("cri_client", cri)
_spec.loader.exec_module(cri)


@pytest.mark.parametrize(("n", "wire"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (150, b"\x96\x01"),
    (300, b"\xac\x02"), (1 << 63, b"\x80" * 9 + b"\x01"), (-1, b"\xff" * 9 + b"\x01"),
    (-2, b"\xfe" + b"\xff" * 8 + b"\x01"),
])
def test_varint(n: int, wire: bytes) -> None:
    assert cri.encode_varint(n) == wire
    value, pos = cri.decode_varint(wire + b"tail", 0)
    assert pos == len(wire)
    assert value == (n if n >= 0 else n + (1 << 64))


def test_varint_errors() -> None:
    with pytest.raises(ValueError, match="truncated"):
        cri.decode_varint(b"\x80", 0)
    with pytest.raises(ValueError, match="ten bytes"):
        cri.decode_varint(b"\xff" * 11, 0)
    with pytest.raises(ValueError):
        cri.encode_varint(1 << 64)


def subset(want: object, got: object) -> bool:
    """Every field of ``want`` is in ``got`` with the same value (decode adds the defaults)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(subset(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(map(subset, want, got))
    return want == got


# (message, value, hand-computed wire form)
CASES = [
    ("VersionRequest", {"version": "v1"}, b"\x0a\x02v1"),
    ("VersionRequest", {"version": ""}, b""),  # a proto3 default is not written
    ("StopContainerRequest", {"container_id": "c", "timeout": 10}, b"\x0a\x01c\x10\x0a"),
    ("ExecRequest", {"container_id": "c", "tty": True, "stdin": False}, b"\x0a\x01c\x18\x01"),
    # an enum: NamespaceOption.pid = NODE; network = POD (0) is left out
    ("NamespaceOption", {"network": cri.POD, "pid": cri.NODE}, b"\x10\x02"),
    # a present wrapper message with a default value inside: an empty field 5
    ("LinuxContainerSecurityContext", {"run_as_user": {"value": 0}}, b"\x2a\x00"),
    ("LinuxContainerSecurityContext", {"run_as_user": {"value": 1000}}, b"\x2a\x03\x08\xe8\x07"),
    # repeated int64: packed into one length-delimited field 8
    ("LinuxContainerSecurityContext", {"supplemental_groups": [1, 300]}, b"\x42\x03\x01\xac\x02"),
    # repeated strings: one field each
    ("ExecSyncRequest", {"cmd": ["ls", "-l"], "timeout": 2}, b"\x12\x02ls\x12\x02-l\x18\x02"),
    # a negative int64 is ten bytes
    ("LinuxContainerResources", {"oom_score_adj": -1}, b"\x28" + b"\xff" * 9 + b"\x01"),
    # map<string, string>: a repeated entry message {1: key, 2: value}
    ("PodSandboxConfig", {"labels": {"a": "b"}}, b"\x32\x06\x0a\x01a\x12\x01b"),
    # repeated messages, an empty one included
    ("ContainerConfig", {"mounts": [{"container_path": "/a"}, {}]}, b"\x3a\x04\x0a\x02/a\x3a\x00"),
    # nesting, fields in number order
    ("RunPodSandboxRequest", {"runtime_handler": "runc", "config": {"metadata": {"name": "p"}}},
     b"\x0a\x05\x0a\x03\x0a\x01p\x12\x04runc"),
    ("ExecSyncResponse", {"stdout": b"hi\n", "exit_code": 3}, b"\x0a\x03hi\n\x18\x03"),
    ("Mount", {"container_path": "/m", "host_path": "/h", "readonly": True,
               "propagation": cri.PROPAGATION_BIDIRECTIONAL},
     b"\x0a\x02/m\x12\x02/h\x18\x01\x28\x02"),
]


@pytest.mark.parametrize(("name", "value", "wire"), CASES)
def test_encode_decode(name: str, value: dict, wire: bytes) -> None:
    assert cri.encode(name, value) == wire
    assert subset(value, cri.decode(name, wire))


def test_decode_fills_defaults() -> None:
    status = cri.decode("ContainerStatus", b"")
    assert status["exit_code"] == 0 and status["reason"] == "" and status["mounts"] == []
    assert status["labels"] == {} and status["metadata"] is None
    assert cri.decode("ExecSyncResponse", b"")["stdout"] == b""
    assert cri.decode("RuntimeCondition", b"")["status"] is False


def test_decode_signed_and_unsigned() -> None:
    assert cri.decode("ExecSyncResponse", b"\x18" + b"\xff" * 9 + b"\x01")["exit_code"] == -1
    assert cri.decode("ContainerStatus", b"\x38" + b"\xf1" + b"\xff" * 8 + b"\x01")["exit_code"] == -15
    # uint32 keeps the low 32 bits; int64 is signed
    assert cri.decode("ContainerMetadata", b"\x10\xff\xff\xff\xff\x0f")["attempt"] == 0xFFFFFFFF
    assert cri.decode("Int64Value", b"\x08\xff\xff\xff\xff\x0f")["value"] == 0xFFFFFFFF


def test_decode_unpacked_repeated_and_unknown_fields() -> None:
    # supplemental_groups as two separate varint fields (unpacked), then the packed form appended
    wire = b"\x40\x01\x40\xac\x02\x42\x01\x07"
    assert cri.decode("LinuxContainerSecurityContext", wire)["supplemental_groups"] == [1, 300, 7]
    # unknown fields of each wire type are skipped: 9 varint, 10 bytes, 11 fixed32, 12 fixed64
    wire = b"\x0a\x030.1" + b"\x48\x05" + b"\x52\x01x" + b"\x5d" + b"\0" * 4 + b"\x61" + b"\0" * 8
    assert cri.decode("VersionResponse", wire)["version"] == "0.1"


def test_decode_map_and_nested() -> None:
    wire = (b"\x0a\x02p1" + b"\x12\x09\x0a\x03pod\x1a\x02ns"  # id, metadata {name, namespace}
            + b"\x3a\x06\x0a\x01k\x12\x01v" + b"\x3a\x03\x0a\x01j")  # labels: an entry without value
    status = cri.decode("PodSandboxStatus", wire)
    assert status["id"] == "p1"
    assert status["metadata"] == {"name": "pod", "uid": "", "namespace": "ns", "attempt": 0}
    assert status["labels"] == {"k": "v", "j": ""}
    assert status["network"] is None and status["state"] == cri.SANDBOX_READY


def test_round_trip() -> None:
    config = {"metadata": {"name": "c", "attempt": 1}, "image": {"image": "localhost/x:latest"},
              "command": ["sh", "-c", "echo ü"], "envs": [{"key": "A", "value": "1"}],
              "mounts": [{"container_path": "/v", "host_path": "/h", "propagation": 1}],
              "labels": {"x": "y", "z": ""}, "log_path": "c.log", "tty": True,
              "linux": {"resources": {"oom_score_adj": 500, "memory_limit_in_bytes": 1 << 40},
                        "security_context": {
                            "capabilities": {"add_capabilities": ["SYS_ADMIN"], "drop_capabilities": ["ALL"]},
                            "namespace_options": {"pid": cri.CONTAINER, "ipc": cri.NODE},
                            "run_as_user": {"value": 0}, "run_as_group": {"value": 5},
                            "supplemental_groups": [0, 1 << 40], "no_new_privs": True,
                            "masked_paths": ["/a"], "readonly_paths": ["/b", "/c"],
                            "seccomp": {"profile_type": cri.LOCALHOST, "localhost_ref": "/p.json"}}}}
    back = cri.decode("ContainerConfig", cri.encode("ContainerConfig", config))

    assert subset(config, back)


def test_encode_errors() -> None:
    with pytest.raises(KeyError, match="no field"):
        cri.encode("VersionRequest", {"versoin": "v1"})
    with pytest.raises(ValueError, match="negative"):
        cri.encode("ContainerMetadata", {"attempt": -1})
    with pytest.raises(ValueError, match="truncated"):
        cri.decode("VersionRequest", b"\x0a\x05v1")
    with pytest.raises(ValueError, match="length-delimited"):
        cri.decode("StopContainerRequest", b"\x12\x01x")  # timeout (int64) as bytes
    with pytest.raises(ValueError, match="wire type"):
        cri.decode("StopContainerRequest", b"\x08\x01")  # container_id (string) as a varint


def test_every_message_type_is_known() -> None:
    for name, table in cri.MESSAGES.items():
        numbers = [number for number, _ in table.values()]
        assert len(numbers) == len(set(numbers)), name
        for _, kind in table.values():
            elem = kind.removeprefix("[]")
            assert kind == "map" or elem in cri.MESSAGES or elem in cri._SCALARS, (name, kind)


def test_websocket_accept() -> None:
    # RFC 6455, section 1.3
    assert cri.ws_accept(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_websocket_frames() -> None:
    mask = b"\x01\x02\x03\x04"
    # FIN + binary, mask bit + length 3, the mask, payload XOR mask
    assert cri.ws_frame(cri.OP_BINARY, b"\x00hi", mask) == b"\x82\x83\x01\x02\x03\x04\x01\x6a\x6a"
    frame = cri.ws_frame(cri.OP_BINARY, bytes(200), mask)
    assert frame[:8] == b"\x82\xfe\x00\xc8" + mask and frame[8:12] == mask and len(frame) == 208
    frame = cri.ws_frame(cri.OP_CLOSE, bytes(70000), mask)
    assert frame[:10] == b"\x88\xff" + (70000).to_bytes(8, "big") and len(frame) == 10 + 4 + 70000


def test_exit_code_of_status() -> None:
    assert cri.exit_code({"metadata": {}, "status": "Success"}) == 0
    failure = {"status": "Failure", "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}
    assert cri.exit_code(failure) == 7
    with pytest.raises(AssertionError):
        cri.exit_code({"status": "Failure", "message": "oops"})
