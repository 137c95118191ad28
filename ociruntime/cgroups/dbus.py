"""A blocking D-Bus client for systemd's manager API, on jeepney's message codec.

Only the systemd cgroup driver (cgroups/systemd.py) imports this, and only when it must talk to
systemd (creating, changing or stopping a unit): never on the cgroupfs paths.

jeepney provides the wire format (marshalling, the SASL EXTERNAL handshake); the loop here is
ours because it must work on two kinds of connection, as runc's go-systemd does:

* the system bus (``/run/dbus/system_bus_socket``, dbus-daemon), which needs ``Hello`` and an
  ``AddMatch`` before signals reach us;
* systemd's private socket (``/run/systemd/private``, root only), a peer-to-peer connection
  with no bus daemon: no ``Hello``, and signals come to whoever called ``Subscribe``.

The rootless driver talks to the user's own manager (``systemd --user``) the same two ways: the
session bus (``$DBUS_SESSION_BUS_ADDRESS``, else ``$XDG_RUNTIME_DIR/bus`` of dbus-user-session),
else the manager's private socket ``$XDG_RUNTIME_DIR/systemd/private``.  The EXTERNAL
authentication names a uid, and the peer checks it against the uid the kernel reports for our
socket, which is always the *host's* view: uid 0 in rootless podman's user namespace must send
the host uid it maps to (read from /proc/self/uid_map), as runc does.

Jobs: ``StartTransientUnit``/``StopUnit`` return a job object path at once; the work is done
when systemd emits ``JobRemoved`` for that path.  Signals that arrive while we wait for a method
reply are kept, since the job can finish before its reply is read.
"""

from __future__ import annotations

import os
import socket
import time

from ociruntime.errors import OCIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SYSTEM_BUS = "/run/dbus/system_bus_socket"
PRIVATE_SOCKET = "/run/systemd/private"
SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
# How long one method call or job may take; runc waits 30 s for a unit to start or stop.
CALL_TIMEOUT = 30.0


class DBusError(OCIError):
    """An error reply: ``name`` is the D-Bus error name (org.freedesktop.systemd1.NoSuchUnit...)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name


def parse_address(address: str) -> list[str]:
    """The Unix socket paths of a D-Bus address (``unix:path=...;unix:abstract=...``), in order;
    abstract sockets come back as ``"\\0name"``, other transports are left out.  Values are
    %-escaped (D-Bus specification, "Server Addresses")."""
    from urllib.parse import unquote

    out = []
    for part in address.split(";"):
        transport, _, rest = part.partition(":")
        if transport != "unix":
            continue
        keys = dict(kv.split("=", 1) for kv in rest.split(",") if "=" in kv)
        if keys.get("path"):
            out.append(unquote(keys["path"]))
        elif keys.get("abstract"):
            out.append("\0" + unquote(keys["abstract"]))
    return out


def user_candidates(env: Mapping[str, str]) -> list[tuple[str, bool]]:
    """Where the user's manager answers, in the order tried: (socket path, is a bus).

    runc's rule (DetectUserDbusSessionBusAddress): ``$DBUS_SESSION_BUS_ADDRESS`` when set, else
    ``$XDG_RUNTIME_DIR/bus`` when it exists; then, beyond runc, the user manager's private
    socket (no bus daemon needed: a session without dbus-user-session still works)."""
    out: list[tuple[str, bool]] = []
    xdg = env.get("XDG_RUNTIME_DIR", "")
    address = env.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        out += [(path, True) for path in parse_address(address)]
    elif xdg and os.path.exists(os.path.join(xdg, "bus")):
        out.append((os.path.join(xdg, "bus"), True))
    if xdg:
        out.append((os.path.join(xdg, "systemd", "private"), False))
    return out


def host_uid(euid: int, uid_map: str) -> int:
    """The uid ``euid`` is outside our user namespace (the initial one's map is the identity):
    what the bus sees as our peer credentials.  ``euid`` itself when it is not mapped."""
    for line in uid_map.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        inside, outside, count = (int(f) for f in fields)
        if inside <= euid < inside + count:
            return outside + euid - inside
    return euid


def own_host_uid() -> int:
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return host_uid(os.geteuid(), f.read())
    except OSError:
        return os.geteuid()


def _auth(sock: socket.socket, uid: int, deadline: float) -> None:
    """The SASL EXTERNAL handshake for ``uid`` (the client side of the D-Bus specification)."""
    def send(data: bytes) -> None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(data)

    send(b"\0AUTH EXTERNAL " + str(uid).encode().hex().encode() + b"\r\n")
    line = b""
    while not line.endswith(b"\r\n"):
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data = sock.recv(4096)
        if not data or len(line) > 4096:
            raise ValueError("connection closed during authentication")
        line += data
    if not line.startswith(b"OK "):
        raise ValueError(f"authentication as uid {uid} refused: {line.strip().decode(errors='replace')}")
    send(b"BEGIN\r\n")


class Connection:
    """One authenticated connection to systemd; use as a context manager."""

    def __init__(self, sock: Any, bus: bool) -> None:
        from jeepney import Parser

        self.sock = sock
        self.bus = bus
        self.parser = Parser()
        self.serial = 0
        self.signals: list[Any] = []
        self.path = ""  # the socket connected to (set by open)
        if bus:
            self._call_bus("Hello", None, ())

    @classmethod
    def open(cls, socket_path: str | None = None) -> Connection:
        """The system bus if it answers, else (as root) systemd's private socket."""
        candidates = [(socket_path, socket_path != PRIVATE_SOCKET)] if socket_path else [
            (SYSTEM_BUS, True), (PRIVATE_SOCKET, False)]
        if not socket_path and os.geteuid() != 0:
            candidates = candidates[:1]
        return cls._first(candidates, os.geteuid(), "systemd")

    @classmethod
    def open_user(cls, env: Mapping[str, str] | None = None,
                  extra: list[tuple[str, bool]] | None = None) -> Connection:
        """The user's own manager (``systemd --user``), found from ``env`` (user_candidates)
        and then ``extra`` (the sockets a container's create used), authenticated as our host uid."""
        candidates = user_candidates(os.environ if env is None else env)
        candidates += [c for c in extra or [] if c not in candidates]
        if not candidates:
            raise OCIError("cannot connect to the user's systemd: neither DBUS_SESSION_BUS_ADDRESS nor "
                           "XDG_RUNTIME_DIR is set")
        return cls._first(candidates, own_host_uid(), "the user's systemd")

    @classmethod
    def _first(cls, candidates: list[tuple[str, bool]], uid: int, what: str) -> Connection:
        errors = []
        for path, bus in candidates:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            deadline = time.monotonic() + CALL_TIMEOUT
            try:
                sock.settimeout(CALL_TIMEOUT)
                sock.connect(path)
                _auth(sock, uid, deadline)
            except (OSError, ValueError) as exc:
                sock.close()
                why = (exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)
                errors.append(f"{path.replace(chr(0), '@')}: {why}")
                continue
            try:
                conn = cls(sock, bus)
            except BaseException:
                sock.close()
                raise
            conn.path = path
            return conn
        raise OCIError(f"cannot connect to {what} over D-Bus (" + "; ".join(errors) + ")")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ---- messages -------------------------------------------------------------------------
    def _send(self, msg: Any) -> int:
        self.serial += 1
        self.sock.sendall(msg.serialise(serial=self.serial))
        return self.serial

    def _receive(self, deadline: float) -> Any:
        while True:
            msg = self.parser.get_next_message()
            if msg is not None:
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise OCIError("systemd did not answer over D-Bus in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise OCIError("systemd did not answer over D-Bus in time") from None
            if not data:
                raise OCIError("systemd closed the D-Bus connection")
            self.parser.add_data(data)

    def _reply(self, serial: int) -> tuple:
        from jeepney import HeaderFields, MessageType

        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            msg = self._receive(deadline)
            kind = msg.header.message_type
            if kind == MessageType.signal:
                self.signals.append(msg)
                continue
            if msg.header.fields.get(HeaderFields.reply_serial) != serial:
                continue
            if kind == MessageType.error:
                name = msg.header.fields.get(HeaderFields.error_name, "error")
                text = msg.body[0] if msg.body and isinstance(msg.body[0], str) else ""
                raise DBusError(name, text)
            return tuple(msg.body)

    def _call_bus(self, method: str, signature: str | None, body: tuple) -> tuple:
        from jeepney import DBusAddress, new_method_call

        bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus")
        return self._reply(self._send(new_method_call(bus, method, signature, body)))

    def call(self, method: str, signature: str | None = None, body: tuple = (),
             interface: str = MANAGER, path: str = SYSTEMD_PATH) -> tuple:
        """Call a systemd method and return its reply's body; DBusError on an error reply."""
        from jeepney import DBusAddress, new_method_call

        addr = DBusAddress(path, bus_name=SYSTEMD, interface=interface)
        return self._reply(self._send(new_method_call(addr, method, signature, body)))

    def manager_property(self, name: str) -> Any:
        (variant,) = self.call("Get", "ss", (MANAGER, name), interface="org.freedesktop.DBus.Properties")
        return variant[1]

    # ---- jobs -----------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Ask for JobRemoved signals (before starting the job they report on)."""
        if self.bus:
            rule = (f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',"
                    f"interface='{MANAGER}',member='JobRemoved'")
            self._call_bus("AddMatch", "s", (rule,))
        self.call("Subscribe")

    def wait_job(self, job: str, timeout: float = CALL_TIMEOUT) -> str:
        """Wait for ``JobRemoved`` of ``job``; returns its result ("done", "failed", ...)."""
        from jeepney import HeaderFields

        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.signals):
                if msg.header.fields.get(HeaderFields.member) == "JobRemoved" and msg.body[1] == job:
                    del self.signals[i]
                    return str(msg.body[3])
            self.signals.clear()
            msg = self._receive(deadline)
            if msg.header.message_type.name == "signal":
                self.signals.append(msg)
