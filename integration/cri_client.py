"""A small client of the Kubernetes CRI (``runtime.v1``) for integration/test_cri.py.

Three parts, standard library plus ``grpcio`` (the CRI is gRPC only):

* a protobuf wire codec: varints, length-delimited fields, nested messages, repeated fields
  (numeric ones packed, as proto3 writes them; both forms read), ``map<string, string>`` entries,
  int32/int64/uint32/uint64/bool/enum, unknown fields skipped;
* the messages the tests use, as tables of field names, numbers and types, written from the
  CRI's interface definition (k8s.io/cri-api ``pkg/apis/runtime/v1/api.proto``);
* a minimal websocket client for the streaming server's ``Exec`` URLs (Kubernetes' channel
  protocol ``v4.channel.k8s.io``), only ever to 127.0.0.1.

A message is a dict keyed by field name.  Encoding leaves out ``None`` and proto3 defaults (0,
"", False, empty lists and maps); a nested message given as a dict is always written, even when
empty (``{"seccomp": {}}`` is a RuntimeDefault profile, ``{"run_as_user": {}}`` is uid 0).
Decoding returns every field of the table: absent scalars as their default, repeated as ``[]``,
maps as ``{}``, absent messages as ``None``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from functools import partial
from typing import Any
from urllib.parse import urlsplit

# ---- the wire codec -----------------------------------------------------------------------------

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_SCALARS = {"string": LEN, "bytes": LEN, "bool": VARINT, "int32": VARINT, "int64": VARINT,
            "uint32": VARINT, "uint64": VARINT, "enum": VARINT}
_DEFAULTS = {"string": "", "bytes": b"", "bool": False}


def encode_varint(n: int) -> bytes:
    """Base-128 varint; a negative number as its 64-bit two's complement (ten bytes)."""
    if n < 0:
        n += 1 << 64
    if not 0 <= n < 1 << 64:
        raise ValueError(f"{n} does not fit in 64 bits")
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than ten bytes")


def _tag(number: int, wire: int) -> bytes:
    return encode_varint(number << 3 | wire)


def _len_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, LEN) + encode_varint(len(payload)) + payload


def _scalar_payload(kind: str, value: Any) -> bytes:
    if kind == "string":
        return value.encode()
    if kind == "bytes":
        return bytes(value)
    if kind == "bool":
        return encode_varint(int(bool(value)))
    if kind in ("uint32", "uint64") and value < 0:
        raise ValueError(f"{kind} cannot be negative: {value}")
    return encode_varint(int(value))


def _field(kind: str) -> tuple[bool, str]:
    """(repeated, element type) of a table entry's type."""
    return (True, kind[2:]) if kind.startswith("[]") else (False, kind)


def encode(name: str, msg: dict[str, Any]) -> bytes:
    """The wire form of message ``name`` (a key of MESSAGES); fields in number order."""
    table = MESSAGES[name]
    unknown = set(msg) - set(table)
    if unknown:
        raise KeyError(f"{name} has no field {sorted(unknown)}")
    out = bytearray()
    for field, (number, kind) in sorted(table.items(), key=lambda kv: kv[1][0]):
        value = msg.get(field)
        if value is None:
            continue
        repeated, elem = _field(kind)
        if kind == "map":
            for k, v in value.items():
                out += _len_delimited(number, encode("_MapEntry", {"key": k, "value": v}))
        elif elem in MESSAGES:
            for item in value if repeated else [value]:
                out += _len_delimited(number, encode(elem, item))
        elif repeated and _SCALARS[elem] == VARINT:
            if value:
                out += _len_delimited(number, b"".join(_scalar_payload(elem, v) for v in value))
        elif repeated:
            for v in value:
                out += _len_delimited(number, _scalar_payload(elem, v))
        elif value != _DEFAULTS.get(elem, 0):  # proto3: defaults are not written
            if _SCALARS[elem] == LEN:
                out += _len_delimited(number, _scalar_payload(elem, value))
            else:
                out += _tag(number, VARINT) + _scalar_payload(elem, value)
    return bytes(out)


def _from_varint(kind: str, n: int) -> Any:
    if kind == "bool":
        return n != 0
    if kind == "uint32":
        return n & 0xFFFFFFFF
    if kind == "uint64":
        return n
    if n >= 1 << 63:  # int32, int64, enum: sign-extended to 64 bits on the wire
        n -= 1 << 64
    if kind in ("int32", "enum"):
        n = (n + (1 << 31)) % (1 << 32) - (1 << 31)
    return n


def _skip(data: bytes, pos: int, wire: int) -> int:
    if wire == VARINT:
        return decode_varint(data, pos)[1]
    if wire == I64:
        return pos + 8
    if wire == I32:
        return pos + 4
    if wire == LEN:
        n, pos = decode_varint(data, pos)
        return pos + n
    raise ValueError(f"unsupported wire type {wire}")


def decode(name: str, data: bytes) -> dict[str, Any]:
    """Message ``name`` from its wire form; every field of the table is in the result."""
    table = MESSAGES[name]
    by_number = {number: (field, kind) for field, (number, kind) in table.items()}
    msg: dict[str, Any] = {}
    for field, (_, kind) in table.items():
        repeated, elem = _field(kind)
        msg[field] = {} if kind == "map" else [] if repeated else None if elem in MESSAGES \
            else _DEFAULTS.get(elem, 0)
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number not in by_number:
            pos = _skip(data, pos, wire)
            continue
        field, kind = by_number[number]
        repeated, elem = _field(kind)
        if wire == LEN:
            n, pos = decode_varint(data, pos)
            payload = data[pos:pos + n]
            if len(payload) != n:
                raise ValueError(f"{name}.{field}: truncated")
            pos += n
            if kind == "map":
                entry = decode("_MapEntry", payload)
                msg[field][entry["key"]] = entry["value"]
            elif elem in MESSAGES:
                value = decode(elem, payload)
                msg[field] = [*msg[field], value] if repeated else value
            elif _SCALARS[elem] == LEN:
                value = payload.decode() if elem == "string" else payload
                msg[field] = [*msg[field], value] if repeated else value
            elif repeated:  # packed varints
                p = 0
                while p < len(payload):
                    n, p = decode_varint(payload, p)
                    msg[field].append(_from_varint(elem, n))
            else:
                raise ValueError(f"{name}.{field}: a {elem} cannot be length-delimited")
        elif wire == VARINT and elem in _SCALARS and _SCALARS[elem] == VARINT:
            n, pos = decode_varint(data, pos)
            value = _from_varint(elem, n)
            msg[field] = [*msg[field], value] if repeated else value
        else:
            raise ValueError(f"{name}.{field}: unexpected wire type {wire}")
    return msg


# ---- the messages (runtime.v1, field numbers of api.proto) ------------------------------------

# Enums are plain ints.
POD, CONTAINER, NODE = 0, 1, 2  # NamespaceMode
RUNTIME_DEFAULT, UNCONFINED, LOCALHOST = 0, 1, 2  # SecurityProfile.ProfileType
PROPAGATION_PRIVATE, PROPAGATION_HOST_TO_CONTAINER, PROPAGATION_BIDIRECTIONAL = 0, 1, 2
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1  # PodSandboxState
CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, CONTAINER_UNKNOWN = 0, 1, 2, 3

MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "_MapEntry": {"key": (1, "string"), "value": (2, "string")},
    "VersionRequest": {"version": (1, "string")},
    "VersionResponse": {"version": (1, "string"), "runtime_name": (2, "string"),
                        "runtime_version": (3, "string"), "runtime_api_version": (4, "string")},
    "StatusRequest": {"verbose": (1, "bool")},
    "StatusResponse": {"status": (1, "RuntimeStatus"), "info": (2, "map")},
    "RuntimeStatus": {"conditions": (1, "[]RuntimeCondition")},
    "RuntimeCondition": {"type": (1, "string"), "status": (2, "bool"), "reason": (3, "string"),
                         "message": (4, "string")},
    # pods
    "DNSConfig": {"servers": (1, "[]string"), "searches": (2, "[]string"), "options": (3, "[]string")},
    "NamespaceOption": {"network": (1, "enum"), "pid": (2, "enum"), "ipc": (3, "enum"),
                        "target_id": (4, "string")},
    "Int64Value": {"value": (1, "int64")},
    "SecurityProfile": {"profile_type": (1, "enum"), "localhost_ref": (2, "string")},
    "LinuxSandboxSecurityContext": {
        "namespace_options": (1, "NamespaceOption"), "run_as_user": (3, "Int64Value"),
        "readonly_rootfs": (4, "bool"), "supplemental_groups": (5, "[]int64"), "privileged": (6, "bool"),
        "run_as_group": (8, "Int64Value"), "seccomp": (9, "SecurityProfile")},
    "LinuxPodSandboxConfig": {"cgroup_parent": (1, "string"),
                              "security_context": (2, "LinuxSandboxSecurityContext"),
                              "sysctls": (3, "map")},
    "PodSandboxMetadata": {"name": (1, "string"), "uid": (2, "string"), "namespace": (3, "string"),
                           "attempt": (4, "uint32")},
    "PodSandboxConfig": {"metadata": (1, "PodSandboxMetadata"), "hostname": (2, "string"),
                         "log_directory": (3, "string"), "dns_config": (4, "DNSConfig"),
                         "labels": (6, "map"), "annotations": (7, "map"),
                         "linux": (8, "LinuxPodSandboxConfig")},
    "RunPodSandboxRequest": {"config": (1, "PodSandboxConfig"), "runtime_handler": (2, "string")},
    "RunPodSandboxResponse": {"pod_sandbox_id": (1, "string")},
    "StopPodSandboxRequest": {"pod_sandbox_id": (1, "string")},
    "StopPodSandboxResponse": {},
    "RemovePodSandboxRequest": {"pod_sandbox_id": (1, "string")},
    "RemovePodSandboxResponse": {},
    "PodSandboxStatusRequest": {"pod_sandbox_id": (1, "string"), "verbose": (2, "bool")},
    "PodSandboxStatusResponse": {"status": (1, "PodSandboxStatus"), "info": (2, "map")},
    "PodSandboxNetworkStatus": {"ip": (1, "string")},
    "Namespace": {"options": (2, "NamespaceOption")},
    "LinuxPodSandboxStatus": {"namespaces": (1, "Namespace")},
    "PodSandboxStatus": {"id": (1, "string"), "metadata": (2, "PodSandboxMetadata"), "state": (3, "enum"),
                         "created_at": (4, "int64"), "network": (5, "PodSandboxNetworkStatus"),
                         "linux": (6, "LinuxPodSandboxStatus"), "labels": (7, "map"),
                         "annotations": (8, "map"), "runtime_handler": (9, "string")},
    "ListPodSandboxRequest": {},
    "ListPodSandboxResponse": {"items": (1, "[]PodSandbox")},
    "PodSandbox": {"id": (1, "string"), "metadata": (2, "PodSandboxMetadata"), "state": (3, "enum"),
                   "created_at": (4, "int64"), "labels": (5, "map"), "annotations": (6, "map"),
                   "runtime_handler": (7, "string")},
    # containers
    "ImageSpec": {"image": (1, "string"), "annotations": (2, "map")},
    "KeyValue": {"key": (1, "string"), "value": (2, "string")},
    "Mount": {"container_path": (1, "string"), "host_path": (2, "string"), "readonly": (3, "bool"),
              "selinux_relabel": (4, "bool"), "propagation": (5, "enum")},
    "LinuxContainerResources": {"cpu_period": (1, "int64"), "cpu_quota": (2, "int64"),
                                "cpu_shares": (3, "int64"), "memory_limit_in_bytes": (4, "int64"),
                                "oom_score_adj": (5, "int64"), "cpuset_cpus": (6, "string"),
                                "cpuset_mems": (7, "string"), "unified": (9, "map")},
    "Capability": {"add_capabilities": (1, "[]string"), "drop_capabilities": (2, "[]string")},
    "LinuxContainerSecurityContext": {
        "capabilities": (1, "Capability"), "privileged": (2, "bool"),
        "namespace_options": (3, "NamespaceOption"), "run_as_user": (5, "Int64Value"),
        "run_as_username": (6, "string"), "readonly_rootfs": (7, "bool"),
        "supplemental_groups": (8, "[]int64"), "no_new_privs": (11, "bool"),
        "run_as_group": (12, "Int64Value"), "masked_paths": (13, "[]string"),
        "readonly_paths": (14, "[]string"), "seccomp": (15, "SecurityProfile")},
    "LinuxContainerConfig": {"resources": (1, "LinuxContainerResources"),
                             "security_context": (2, "LinuxContainerSecurityContext")},
    "ContainerMetadata": {"name": (1, "string"), "attempt": (2, "uint32")},
    "ContainerConfig": {"metadata": (1, "ContainerMetadata"), "image": (2, "ImageSpec"),
                        "command": (3, "[]string"), "args": (4, "[]string"), "working_dir": (5, "string"),
                        "envs": (6, "[]KeyValue"), "mounts": (7, "[]Mount"), "labels": (9, "map"),
                        "annotations": (10, "map"), "log_path": (11, "string"), "stdin": (12, "bool"),
                        "stdin_once": (13, "bool"), "tty": (14, "bool"),
                        "linux": (15, "LinuxContainerConfig")},
    "CreateContainerRequest": {"pod_sandbox_id": (1, "string"), "config": (2, "ContainerConfig"),
                               "sandbox_config": (3, "PodSandboxConfig")},
    "CreateContainerResponse": {"container_id": (1, "string")},
    "StartContainerRequest": {"container_id": (1, "string")},
    "StartContainerResponse": {},
    "StopContainerRequest": {"container_id": (1, "string"), "timeout": (2, "int64")},
    "StopContainerResponse": {},
    "RemoveContainerRequest": {"container_id": (1, "string")},
    "RemoveContainerResponse": {},
    "ContainerStatusRequest": {"container_id": (1, "string"), "verbose": (2, "bool")},
    "ContainerStatusResponse": {"status": (1, "ContainerStatus"), "info": (2, "map")},
    "ContainerStatus": {"id": (1, "string"), "metadata": (2, "ContainerMetadata"), "state": (3, "enum"),
                        "created_at": (4, "int64"), "started_at": (5, "int64"),
                        "finished_at": (6, "int64"), "exit_code": (7, "int32"), "image": (8, "ImageSpec"),
                        "image_ref": (9, "string"), "reason": (10, "string"), "message": (11, "string"),
                        "labels": (12, "map"), "annotations": (13, "map"), "mounts": (14, "[]Mount"),
                        "log_path": (15, "string")},
    "ListContainersRequest": {},
    "ListContainersResponse": {"containers": (1, "[]Container")},
    "Container": {"id": (1, "string"), "pod_sandbox_id": (2, "string"),
                  "metadata": (3, "ContainerMetadata"), "state": (6, "enum")},
    "ExecSyncRequest": {"container_id": (1, "string"), "cmd": (2, "[]string"), "timeout": (3, "int64")},
    "ExecSyncResponse": {"stdout": (1, "bytes"), "stderr": (2, "bytes"), "exit_code": (3, "int32")},
    "ExecRequest": {"container_id": (1, "string"), "cmd": (2, "[]string"), "tty": (3, "bool"),
                    "stdin": (4, "bool"), "stdout": (5, "bool"), "stderr": (6, "bool")},
    "ExecResponse": {"url": (1, "string")},
    # images
    "ImageStatusRequest": {"image": (1, "ImageSpec"), "verbose": (2, "bool")},
    "ImageStatusResponse": {"image": (1, "Image"), "info": (2, "map")},
    "Image": {"id": (1, "string"), "repo_tags": (2, "[]string"), "repo_digests": (3, "[]string"),
              "size": (4, "uint64"), "uid": (5, "Int64Value"), "username": (6, "string")},
}

IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}


class CriClient:
    """``client.call("RunPodSandbox", config=..., runtime_handler=...)`` -> the response dict.

    The keywords are the request's fields (``timeout`` too: StopContainer and ExecSync have one);
    ``_deadline`` is the call's own.  Errors are ``grpc.RpcError`` (``.code()``, ``.details()``).
    """

    def __init__(self, address: str, timeout: float = 60) -> None:
        import grpc  # only here: the codec and its unit tests need no gRPC

        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.timeout = timeout
        self._stubs: dict[str, Any] = {}

    def call(self, method: str, _deadline: float | None = None, **request: Any) -> dict[str, Any]:
        stub = self._stubs.get(method)
        if stub is None:
            service = "ImageService" if method in IMAGE_METHODS else "RuntimeService"
            stub = self.channel.unary_unary(
                f"/runtime.v1.{service}/{method}",
                request_serializer=partial(encode, f"{method}Request"),
                response_deserializer=partial(decode, f"{method}Response"))
            self._stubs[method] = stub
        return stub(request, timeout=_deadline or self.timeout)

    def close(self) -> None:
        self.channel.close()


# ---- websocket client (RFC 6455) and the Kubernetes channel protocol ----------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key: bytes) -> str:
    """The server's Sec-WebSocket-Accept for the client's Sec-WebSocket-Key ``key``."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()


def ws_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final client frame: masked with the four bytes ``mask``, as clients must."""
    head = bytearray([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class WebSocket:
    """A blocking websocket client to an ``http://127.0.0.1:PORT/...`` URL."""

    def __init__(self, url: str, protocol: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"only plain http to 127.0.0.1 is used here: {url}")
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\nOrigin: http://127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1:2] != ["101"]:
            raise ConnectionError(f"websocket handshake refused: {head.decode('latin-1')!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("sec-websocket-accept") != ws_accept(key):
            raise ConnectionError(f"bad Sec-WebSocket-Accept: {headers}")
        self.protocol = headers.get("sec-websocket-protocol", "")
        self.closed = False

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        self.sock.sendall(ws_frame(opcode, payload, os.urandom(4)))

    def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        mask = self._take(4) if b1 & 0x80 else b""
        payload = self._take(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv(self) -> bytes | None:
        """The next data message (fragments joined), or None once the server closed."""
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = self._frame()
            if opcode == OP_PING:
                self.send(payload, OP_PONG)
            elif opcode == OP_CLOSE:
                if not self.closed:
                    self.send(payload[:2], OP_CLOSE)
                    self.closed = True
                return None
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                parts.append(payload)
                if fin:
                    return b"".join(parts)

    def close(self) -> None:
        try:
            if not self.closed:
                self.send(struct.pack("!H", 1000), OP_CLOSE)
                self.closed = True
        except OSError:
            pass
        self.sock.close()


STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)


class ExecStream:
    """A streaming ``Exec`` session over ``v4.channel.k8s.io``: each binary message is one channel
    byte (0 stdin, 1 stdout, 2 stderr, 3 error: a JSON metav1.Status once the process ended,
    4 resize) followed by the data."""

    PROTOCOL = "v4.channel.k8s.io"

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.ws = WebSocket(url, self.PROTOCOL, timeout)
        if self.ws.protocol != self.PROTOCOL:
            raise ConnectionError(f"server chose subprotocol {self.ws.protocol!r}")
        self.out = {STDOUT: b"", STDERR: b""}
        self.status: dict[str, Any] | None = None
        self.timeout = timeout

    def write(self, data: bytes) -> None:
        self.ws.send(bytes([STDIN]) + data)

    def resize(self, width: int, height: int) -> None:
        self.ws.send(bytes([RESIZE]) + json.dumps({"Width": width, "Height": height}).encode())

    def _pump(self) -> bool:
        """Read one message; False once the server closed the connection."""
        msg = self.ws.recv()
        if msg is None:
            return False
        if msg[:1] and msg[0] in self.out:
            self.out[msg[0]] += msg[1:]
        elif msg[:1] == bytes([ERROR]) and len(msg) > 1:
            self.status = json.loads(msg[1:])
        return True

    def read_until(self, needle: bytes, channel: int = STDOUT) -> bytes:
        deadline = time.monotonic() + self.timeout
        while needle not in self.out[channel]:
            if time.monotonic() > deadline or not self._pump():
                raise AssertionError(f"no {needle!r} in {self.out[channel]!r}")
        return self.out[channel]

    def wait(self) -> dict[str, Any]:
        """The final status (channel 3) once the server closed the stream."""
        deadline = time.monotonic() + self.timeout
        while self._pump():
            if time.monotonic() > deadline:
                raise AssertionError("the exec stream did not end")
        self.ws.close()
        if self.status is None:
            raise AssertionError(f"stream ended without a status; output {self.out}")
        return self.status

    def close(self) -> None:
        self.ws.close()


def exit_code(status: dict[str, Any]) -> int:
    """The exit code a v4 status reports: Success is 0, NonZeroExitCode names it in its causes."""
    if status.get("status") == "Success":
        return 0
    for cause in status.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    raise AssertionError(f"status without an exit code: {status}")
