"""CRIU's RPC (``criu swrk FD``): the request we send, the notifications and the answer we get.

runc talks to CRIU this way, and so do we: only the RPC hands back the pty master of a restored
terminal (``orphan-pts-master``) and lets us act at ``setup-namespaces`` (prestart and
createRuntime hooks).  One SOCK_SEQPACKET socketpair, one message per packet, proto2 messages of
CRIU's ``images/rpc.proto`` (only the fields we use; the wire format is written here, so no
protobuf package is needed)::

    ociruntime (parent)                                   criu swrk 3 (our child, fd 3)
      CriuReq{type: DUMP|PRE_DUMP|RESTORE, opts} ───────────▶
                      ◀─────────── CriuResp{type: NOTIFY, notify{script, pid}} (+ an fd for
                                   "orphan-pts-master", in SCM_RIGHTS)
      CriuReq{type: NOTIFY, notify_success} ────────────────▶   (each notification answered)
                      ◀─────────── CriuResp{type: the request's, success, restore{pid},
                                   cr_errmsg}
      close ──────────────────────────────────────────────────▶  criu exits

CRIU opens ``images_dir_fd``/``work_dir_fd`` as ``/proc/<peer>/fd/N`` of the process that made
the socketpair (SO_PEERCRED): those fds are the parent's and stay open until the answer.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
from collections.abc import Callable
from typing import Any

from ociruntime.record import dataclass

# criu_req_type
DUMP, RESTORE, PRE_DUMP, NOTIFY = 1, 2, 4, 6
# criu_cg_mode, by runc's --manage-cgroups-mode names
CG_MODE = {"ignore": 0, "soft": 3, "full": 4, "strict": 5}
# The fd criu swrk is given its end of the socketpair on (runc's "swrk 3").
SWRK_FD = 3

# criu_opts fields we send: name -> (field number, kind).  Kinds: int (int32/uint32/enum), bool,
# str, strs (repeated string), and pairs of two fields for the repeated messages
# (ext_mount_map-like {1: str, 2: str}, inherit_fd {1: str key, 2: int32 fd}).
_OPTS: dict[str, tuple[int, str]] = {
    "images_dir_fd": (1, "int"), "pid": (2, "int"), "leave_running": (3, "bool"),
    "ext_unix_sk": (4, "bool"), "tcp_established": (5, "bool"), "evasive_devices": (6, "bool"),
    "shell_job": (7, "bool"), "file_locks": (8, "bool"), "log_level": (9, "int"),
    "log_file": (10, "str"), "notify_scripts": (12, "bool"), "root": (13, "str"),
    "parent_img": (14, "str"), "track_mem": (15, "bool"), "auto_dedup": (16, "bool"),
    "work_dir_fd": (17, "int"), "link_remap": (18, "bool"), "manage_cgroups": (24, "bool"),
    "cg_root": (25, "str_str"), "rst_sibling": (26, "bool"), "inherit_fd": (27, "str_int"),
    "manage_cgroups_mode": (34, "int"), "external": (37, "strs"), "empty_ns": (38, "int"),
    "join_ns": (39, "str_str"), "freeze_cgroup": (44, "str"), "tcp_skip_in_flight": (46, "bool"),
    "orphan_pts_master": (50, "bool"), "mntns_compat_mode": (65, "bool"),
}


# ---- the wire format (protobuf, proto2) ----------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # negative int32s go as 10-byte two's complement, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, s: str) -> bytes:
    return _bytes(field, os.fsencode(s))


def encode_opts(opts: dict[str, Any]) -> bytes:
    """A criu_opts message from ``{field name: value}``, fields in number order."""
    out = bytearray()
    for name, value in sorted(opts.items(), key=lambda kv: _OPTS[kv[0]][0]):
        field, kind = _OPTS[name]
        if kind == "int":
            out += _int(field, int(value))
        elif kind == "bool":
            out += _int(field, 1 if value else 0)
        elif kind == "str":
            out += _str(field, value)
        elif kind == "strs":
            for s in value:
                out += _str(field, s)
        elif kind == "str_str":
            for a, b in value:
                # cg_root's ctrl is optional: an empty one (the v2 root) is left out.
                out += _bytes(field, (_str(1, a) if a else b"") + _str(2, b))
        else:  # str_int
            for key, fd in value:
                out += _bytes(field, _str(1, key) + _int(2, fd))
    return bytes(out)


def encode_req(req_type: int, opts: dict[str, Any] | None = None,
               notify_success: bool | None = None) -> bytes:
    """A criu_req message."""
    out = _int(1, req_type)
    if opts is not None:
        out += _bytes(2, encode_opts(opts))
    if notify_success is not None:
        out += _int(3, 1 if notify_success else 0)
    return out


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of each field: an int for varints, bytes for length-delimited."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            out.append((field, value))
        elif wire == 2:
            size, i = _read_varint(data, i)
            if i + size > len(data):
                raise ValueError("truncated field")
            out.append((field, data[i:i + size]))
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4  # fixed64/fixed32: none that we read
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if i != len(data):
        raise ValueError("truncated message")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("bad varint")
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def _int32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


@dataclass
class Resp:
    """The criu_resp fields we read."""

    type: int = 0
    success: bool = False
    pid: int = 0           # restore.pid (RESTORE) or notify.pid (NOTIFY)
    script: str = ""       # notify.script
    cr_errno: int = 0
    cr_errmsg: str = ""


def decode_resp(data: bytes) -> Resp:
    r = Resp()
    for field, value in _fields(data):
        if field == 1 and isinstance(value, int):
            r.type = value
        elif field == 2 and isinstance(value, int):
            r.success = bool(value)
        elif field in (4, 5) and isinstance(value, bytes):  # restore{pid = 1}, notify{script 1, pid 2}
            for sub, v in _fields(value):
                if field == 5 and sub == 1 and isinstance(v, bytes):
                    r.script = v.decode(errors="replace")
                elif sub == (1 if field == 4 else 2) and isinstance(v, int):
                    r.pid = _int32(v)
        elif field == 7 and isinstance(value, int):
            r.cr_errno = _int32(value)
        elif field == 9 and isinstance(value, bytes):
            r.cr_errmsg = value.decode(errors="replace")
    return r


# ---- a session with criu swrk --------------------------------------------------------------------

# notify callback: (script, pid, received fds) -> None; raising fails the request.
Notify = Callable[[str, int, list[int]], None]


class RpcError(Exception):
    """criu answered "no" (or went away): its errno and message, if it gave them."""

    def __init__(self, msg: str, cr_errno: int = 0) -> None:
        super().__init__(msg)
        self.cr_errno = cr_errno


def socketpair() -> tuple[socket.socket, socket.socket]:
    """(ours, criu's): criu's end is inheritable, to be dup2'ed to SWRK_FD in the child."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    return ours, theirs


def place_fds(targets: dict[int, int]) -> None:
    """In a child about to exec criu: make each ``target`` fd a copy of its source (inheritable).

    The sources are first moved above every target, so one dup2 never overwrites another's
    source (an fd opened late may well have a target's number)."""
    high = {t: fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, 64) for t, src in targets.items()}
    for t, src in high.items():
        os.dup2(src, t)  # dup2 clears close-on-exec on the target


def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    data, anc, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * array.array("i").itemsize))
    fds: list[int] = []
    for level, ctype, cdata in anc:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(cdata[:len(cdata) - len(cdata) % arr.itemsize])
            fds += arr.tolist()
    return data, fds


def call(sock: socket.socket, req_type: int, opts: dict[str, Any], notify: Notify) -> Resp:
    """Send one request and serve its notifications; return the final answer (success or not).

    A notification handler that raises is answered with notify_success=false (criu then gives
    up and cleans up), and its exception is raised once criu has answered.
    """
    sock.sendall(encode_req(req_type, opts))
    failed: BaseException | None = None
    while True:
        data, fds = _recv(sock)
        if not data:
            for fd in fds:
                os.close(fd)
            if failed is not None:
                raise failed
            raise RpcError("criu closed the connection without an answer")
        resp = decode_resp(data)
        if resp.type != NOTIFY:
            for fd in fds:
                os.close(fd)
            if failed is not None:
                raise failed
            return resp
        ok = True
        try:
            if failed is None:
                notify(resp.script, resp.pid, fds)
        except BaseException as e:
            failed, ok = e, False
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        sock.sendall(encode_req(NOTIFY, notify_success=ok))
