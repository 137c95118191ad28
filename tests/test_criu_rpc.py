"""criu_rpc.py: the protobuf wire format of CRIU's RPC, and a request served against a scripted peer.

Expected bytes are worked out by hand from rpc.proto's field numbers (key = field << 3 | wire
type; varints 7 bits at a time, least significant group first).
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from ociruntime import criu_rpc as rpc


def test_encode_request_by_hand() -> None:
    got = rpc.encode_req(rpc.DUMP, {"log_file": "d", "leave_running": True, "images_dir_fd": 5})
    # criu_req{type=1 (08 01), opts (12 07){images_dir_fd=5 (08 05), leave_running (18 01),
    # log_file "d" (52 01 64)}}: fields in number order whatever the dict's order.
    assert got == bytes.fromhex("0801 1207 0805 1801 520164")


def test_encode_large_fields_and_repeated_messages() -> None:
    got = rpc.encode_opts({"orphan_pts_master": True, "empty_ns": 0x40000000,
                           "inherit_fd": [("pipe:[1]", 2)], "cg_root": [("", "/c"), ("cpu", "/d")]})
    assert got == bytes.fromhex(
        "ca01 04 12022f63"                     # cg_root (25): {path (2) "/c"}, no ctrl
        "ca01 09 0a03637075 12022f64"          # cg_root: {ctrl (1) "cpu", path "/d"}
        "da01 0c 0a08" + b"pipe:[1]".hex() + "1002"  # inherit_fd (27): {key, fd 2}
        "b002 8080808004"                      # empty_ns (38) = 1 << 30
        "9003 01")                             # orphan_pts_master (50)
    # mntns_compat_mode (65): a two-byte key.
    assert rpc.encode_opts({"mntns_compat_mode": True}) == bytes.fromhex("8804 01")
    # int32 -1 is ten bytes, as protobuf writes negative int32s.
    assert rpc.encode_opts({"pid": -1}) == bytes.fromhex("10ffffffffffffffffff01")


def test_notify_ack() -> None:
    assert rpc.encode_req(rpc.NOTIFY, notify_success=True) == bytes.fromhex("0806 1801")
    assert rpc.encode_req(rpc.NOTIFY, notify_success=False) == bytes.fromhex("0806 1800")


def test_decode_responses() -> None:
    body = bytes.fromhex("0a10") + b"setup-namespaces" + bytes.fromhex("102a")
    r = rpc.decode_resp(bytes.fromhex("0806 1001 2a14") + body)
    assert (r.type, r.success, r.script, r.pid) == (rpc.NOTIFY, True, "setup-namespaces", 42)
    r = rpc.decode_resp(bytes.fromhex("0802 1001 2203 08e407"))
    assert (r.type, r.success, r.pid) == (rpc.RESTORE, True, 996)
    # An unknown fixed32 field is skipped; cr_errno and cr_errmsg are read.
    r = rpc.decode_resp(bytes.fromhex("0801 1000 3802 4a03") + b"bad" + bytes.fromhex("6501020304"))
    assert (r.type, r.success, r.cr_errno, r.cr_errmsg) == (rpc.DUMP, False, 2, "bad")


@pytest.mark.parametrize("data", [b"\x08", b"\x12\x05ab", b"\x0b", b"\x08" + b"\xff" * 10 + b"\x01"])
def test_decode_refuses_broken_messages(data: bytes) -> None:
    with pytest.raises(ValueError):
        rpc.decode_resp(data)


def _peer(sock: socket.socket, log: list, script_fd: int) -> None:
    """A scripted criu: one notification with an fd, then the answer."""
    log.append(rpc.decode_resp(sock.recv(65536)).type)  # the request (same first field as a resp)
    body = bytes.fromhex("0a11") + b"orphan-pts-master" + bytes.fromhex("1007")
    socket.send_fds(sock, [bytes.fromhex("0806 1001 2a15") + body], [script_fd])
    log.append(sock.recv(65536))
    sock.send(bytes.fromhex("0802 1001 2202 0809"))
    sock.close()


def test_call_serves_notifications_and_returns_the_answer() -> None:
    ours, theirs = rpc.socketpair()
    r, w = os.pipe()
    log: list = []
    t = threading.Thread(target=_peer, args=(theirs, log, w))
    t.start()
    seen = []

    def notify(script: str, pid: int, fds: list[int]) -> None:
        os.write(fds[0], b"x")  # the fd criu passed is usable in the handler
        seen.append((script, pid, len(fds)))

    try:
        resp = rpc.call(ours, rpc.RESTORE, {"images_dir_fd": 3}, notify)
    finally:
        t.join()
        ours.close()
    assert seen == [("orphan-pts-master", 7, 1)]
    assert os.read(r, 1) == b"x"
    assert log == [rpc.RESTORE, bytes.fromhex("0806 1801")]
    assert (resp.type, resp.success, resp.pid) == (rpc.RESTORE, True, 9)
    os.close(r)
    os.close(w)


def test_a_failing_handler_is_answered_no_and_raised_after_the_answer() -> None:
    ours, theirs = rpc.socketpair()
    log: list = []
    r, w = os.pipe()
    t = threading.Thread(target=_peer, args=(theirs, log, w))
    t.start()

    def notify(script: str, pid: int, fds: list[int]) -> None:
        raise RuntimeError("hook failed")

    try:
        with pytest.raises(RuntimeError, match="hook failed"):
            rpc.call(ours, rpc.RESTORE, {"images_dir_fd": 3}, notify)
    finally:
        t.join()
        ours.close()
    assert log[1] == bytes.fromhex("0806 1800")
    os.close(r)
    os.close(w)


def test_a_peer_that_goes_away_is_an_error() -> None:
    ours, theirs = rpc.socketpair()
    theirs.close()
    with pytest.raises((rpc.RpcError, OSError)):
        rpc.call(ours, rpc.DUMP, {"images_dir_fd": 3}, lambda *a: None)
    ours.close()


def test_place_fds_never_overwrites_a_pending_source() -> None:
    # Sources sit on each other's targets: 10 -> 11 and 11 -> 10 swap.
    def child() -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        os.dup2(r1, 70)
        os.dup2(r2, 71)
        os.write(w1, b"1")
        os.write(w2, b"2")
        rpc.place_fds({71: 70, 70: 71})
        ok = os.read(71, 1) == b"1" and os.read(70, 1) == b"2" and os.get_inheritable(70)
        os._exit(0 if ok else 1)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            child()
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
