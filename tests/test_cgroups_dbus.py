"""The D-Bus client loop of the systemd driver (cgroups/dbus.py) against a scripted peer.

The peer stands in for systemd's private socket (no bus daemon): it answers method calls the way
systemd does, including a JobRemoved signal sent *before* the reply that names the job, which
the client must not lose.  The real systemd is exercised in the systemd guest."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from jeepney import MessageType, Parser, new_error, new_method_return, new_signal
from jeepney.wrappers import DBusAddress

from ociruntime.cgroups import dbus
from ociruntime.errors import OCIError

MANAGER = DBusAddress(dbus.SYSTEMD_PATH, interface=dbus.MANAGER)


def _serve(sock: socket.socket, handle: Callable, calls: list) -> None:
    parser, serial = Parser(), 1000
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        parser.add_data(data)
        while (msg := parser.get_next_message()) is not None:
            calls.append(msg)
            for out in handle(msg):
                serial += 1
                sock.sendall(out.serialise(serial=serial))


@pytest.fixture
def peer() -> Iterator[Callable]:
    threads, socks = [], []

    def start(handle: Callable) -> tuple[dbus.Connection, list]:
        ours, theirs = socket.socketpair()
        socks.extend([ours, theirs])
        calls: list = []
        t = threading.Thread(target=_serve, args=(theirs, handle, calls), daemon=True)
        t.start()
        threads.append(t)
        return dbus.Connection(ours, bus=False), calls

    yield start
    for s in socks[::2]:
        s.close()  # our end: the peer reads EOF and returns
    for t in threads:
        t.join(5)
    for s in socks[1::2]:
        s.close()


def _member(msg) -> str:
    from jeepney import HeaderFields

    return msg.header.fields[HeaderFields.member]


def test_job_signal_before_reply_is_kept(peer) -> None:
    job = "/org/freedesktop/systemd1/job/42"

    def handle(msg):
        if _member(msg) == "StartTransientUnit":
            # systemd can finish the job before the reply is on its way.
            yield new_signal(MANAGER, "JobRemoved", "uoss", (42, job, msg.body[0], "done"))
            yield new_method_return(msg, "o", (job,))
        else:
            yield new_method_return(msg)

    conn, calls = peer(handle)
    conn.subscribe()
    (got,) = conn.call("StartTransientUnit", "ssa(sv)a(sa(sv))",
                       ("x.scope", "replace", [("PIDs", ("au", [1]))], []))
    assert got == job
    assert conn.wait_job(job, timeout=5) == "done"
    assert [_member(m) for m in calls] == ["Subscribe", "StartTransientUnit"]
    assert calls[1].body[2] == [("PIDs", ("au", [1]))]


def test_job_result_and_later_signal(peer) -> None:
    def handle(msg):
        job = "/org/freedesktop/systemd1/job/7"
        yield new_method_return(msg, "o", (job,))
        yield new_signal(MANAGER, "JobRemoved", "uoss", (6, "/org/freedesktop/systemd1/job/6", "o", "done"))
        yield new_signal(MANAGER, "JobRemoved", "uoss", (7, job, "x.scope", "failed"))

    conn, _ = peer(handle)
    (job,) = conn.call("StopUnit", "ss", ("x.scope", "replace"))
    assert conn.wait_job(job, timeout=5) == "failed"


def test_error_reply_is_one_line_with_its_name(peer) -> None:
    def handle(msg):
        yield new_error(msg, "org.freedesktop.systemd1.NoSuchUnit", "s", ("Unit x.scope not loaded.",))

    conn, _ = peer(handle)
    with pytest.raises(dbus.DBusError) as ei:
        conn.call("StopUnit", "ss", ("x.scope", "replace"))
    assert ei.value.name == "org.freedesktop.systemd1.NoSuchUnit"
    assert str(ei.value) == "org.freedesktop.systemd1.NoSuchUnit: Unit x.scope not loaded."


def test_silent_peer_times_out(peer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbus, "CALL_TIMEOUT", 0.2)
    conn, _ = peer(lambda msg: iter(()))
    with pytest.raises(OCIError, match="did not answer"):
        conn.call("Subscribe")


def test_no_systemd_socket_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(OCIError, match="cannot connect to systemd over D-Bus") as ei:
        dbus.Connection.open(str(tmp_path / "nothing"))
    assert "\n" not in str(ei.value)
    assert MessageType.signal  # the codec is importable here (a declared dependency)
