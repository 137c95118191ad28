"""The rootless systemd driver's pure parts: which user manager, as which uid, where its scope
goes (cgroups/systemd.py, cgroups/dbus.py).  The real user manager is exercised in the systemd
guest (integration/test_rootless_systemd.py)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from jeepney import MessageType, Parser, new_method_return

from ociruntime.cgroups import dbus, manager_from_state
from ociruntime.cgroups import systemd as sd
from ociruntime.cgroups.layout import Layout, Mount
from ociruntime.errors import OCIError

MANAGER_CG = "/user.slice/user-1000.slice/user@1000.service"


@pytest.mark.parametrize(("euid", "uid_map", "host"), [
    (0, "         0          0 4294967295\n", 0),            # the initial user namespace
    (1000, "0 0 4294967295", 1000),
    (0, "         0       1000          1\n         1     100000      65536\n", 1000),  # rootless podman
    (5, "0 1000 1\n1 100000 65536\n", 100004),
    (0, "1 100000 65536\n", 0),                                 # unmapped: our own uid
    (0, "", 0),
])
def test_host_uid_from_uid_map(euid: int, uid_map: str, host: int) -> None:
    assert dbus.host_uid(euid, uid_map) == host


def test_parse_address() -> None:
    assert dbus.parse_address("unix:path=/run/user/1000/bus") == ["/run/user/1000/bus"]
    assert dbus.parse_address("unix:path=/tmp/a%20b,guid=0123;tcp:host=x,port=1;unix:abstract=dbus-x") == [
        "/tmp/a b", "\0dbus-x"]
    assert dbus.parse_address("tcp:host=localhost,port=4000") == []
    assert dbus.parse_address("") == []


def test_user_candidates_follow_runcs_order(tmp_path: Path) -> None:
    xdg = str(tmp_path)
    private = (f"{xdg}/systemd/private", False)
    # $DBUS_SESSION_BUS_ADDRESS first, whatever $XDG_RUNTIME_DIR holds; the private socket last.
    assert dbus.user_candidates({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x/bus", "XDG_RUNTIME_DIR": xdg}) == [
        ("/x/bus", True), private]
    # Without it: $XDG_RUNTIME_DIR/bus only when it exists (dbus-user-session's socket).
    assert dbus.user_candidates({"XDG_RUNTIME_DIR": xdg}) == [private]
    (tmp_path / "bus").touch()
    assert dbus.user_candidates({"XDG_RUNTIME_DIR": xdg}) == [(f"{xdg}/bus", True), private]
    assert dbus.user_candidates({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x/bus"}) == [("/x/bus", True)]
    assert dbus.user_candidates({}) == []


def test_default_slice_is_user_slice() -> None:
    assert sd.parse_cgroups_path(None, "c1", user=True) == ("user.slice", "runc-c1.scope")
    assert sd.parse_cgroups_path(":libpod:c1", "x", user=True) == ("user.slice", "libpod-c1.scope")
    assert sd.parse_cgroups_path("a-b.slice:p:c1", "x", user=True) == ("a-b.slice", "p-c1.scope")
    assert sd.parse_cgroups_path(None, "c1") == ("system.slice", "runc-c1.scope")


def _v2() -> Layout:
    return Layout("v2", {}, Mount("/sys/fs/cgroup"))


def test_user_scope_lives_below_the_user_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sd, "systemd_running", lambda: True)
    monkeypatch.setattr(sd, "user_manager_cgroup", lambda: (MANAGER_CG, ("/run/user/1000/bus", True)))
    m = sd.new_systemd_manager(None, "c1", _v2(), user=True)
    assert m.paths == {"unified": f"/sys/fs/cgroup{MANAGER_CG}/user.slice/runc-c1.scope"}
    assert (m.slice, m.unit, m.user) == ("user.slice", "runc-c1.scope", True)
    m2 = sd.new_systemd_manager("a-b.slice:p:c2", "c2", _v2(), user=True)
    assert m2.paths == {"unified": f"/sys/fs/cgroup{MANAGER_CG}/a.slice/a-b.slice/p-c2.scope"}
    state = json.loads(json.dumps(m.to_state()))
    assert state["userBus"] == ["/run/user/1000/bus", True]
    again = manager_from_state(state)
    assert isinstance(again, sd.SystemdManager) and again.user_bus == ("/run/user/1000/bus", True)
    assert again.to_state() == m.to_state()
    # The system manager's state has no userBus (and so reads as before).
    monkeypatch.setattr(sd, "user_manager_cgroup", lambda: pytest.fail("asked the user manager"))
    root = sd.new_systemd_manager(None, "c3", _v2())
    assert "userBus" not in root.to_state() and not root.user
    with pytest.raises(OCIError, match="malformed"):
        manager_from_state({**state, "userBus": ["/x"]})


def test_user_driver_refused_without_cgroup_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sd, "systemd_running", lambda: True)
    monkeypatch.setattr(sd, "user_manager_cgroup", lambda: pytest.fail("asked the user manager"))
    hybrid = Layout("hybrid", {"memory": Mount("/sys/fs/cgroup/memory", "/", ("memory",))},
                    Mount("/sys/fs/cgroup/unified"))
    with pytest.raises(OCIError, match=r"^cannot use rootless systemd cgroups manager on cgroup v1$"):
        sd.new_systemd_manager(None, "c1", hybrid, user=True)


# ---- a scripted user bus: the handshake names the host uid -----------------------------------

@pytest.fixture
def user_bus(tmp_path: Path) -> Iterator[tuple[Path, list]]:
    """A listening $XDG_RUNTIME_DIR/bus answering Hello and Get(ControlGroup); records the
    AUTH line and the calls."""
    path = tmp_path / "bus"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    seen: list = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n" not in data:
                data += conn.recv(4096)
            seen.append(data)
            conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
            parser, buf = Parser(), b""
            while not buf.startswith(b"BEGIN\r\n"):
                buf += conn.recv(4096)
            parser.add_data(buf[len(b"BEGIN\r\n"):])
            serial = 100
            while True:
                msg = parser.get_next_message()
                if msg is None:
                    more = conn.recv(65536)
                    if not more:
                        return
                    parser.add_data(more)
                    continue
                seen.append(msg)
                serial += 1
                if msg.header.fields[3] == "Hello":  # 3: member
                    reply = new_method_return(msg, "s", (":1.42",))
                else:
                    reply = new_method_return(msg, "v", (("s", MANAGER_CG),))
                conn.sendall(reply.serialise(serial=serial))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield tmp_path, seen
    srv.close()
    t.join(5)


def test_user_connection_authenticates_as_the_host_uid(user_bus, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg, seen = user_bus
    monkeypatch.setattr(dbus, "own_host_uid", lambda: 1000)
    monkeypatch.setattr(sd, "systemd_running", lambda: True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    assert sd.user_manager_cgroup() == (MANAGER_CG, (str(xdg / "bus"), True))
    assert seen[0] == b"\0AUTH EXTERNAL " + b"1000".hex().encode() + b"\r\n"
    assert [m.header.fields[3] for m in seen[1:]] == ["Hello", "Get"]
    assert seen[2].body == (dbus.MANAGER, "ControlGroup")
    assert seen[2].header.message_type == MessageType.method_call


def test_no_user_manager_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OCIError, match="neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR"):
        dbus.Connection.open_user({})
    with pytest.raises(OCIError) as ei:
        dbus.Connection.open_user({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert str(ei.value) == (f"cannot connect to the user's systemd over D-Bus ({tmp_path}/systemd/private: "
                             "no such file or directory)")
