"""A blocking D-Bus client for systemd's manager API, on jeepney's message codec.

Only the systemd cgroup driver (cgroups/systemd.py) imports this, and only when it must talk to
systemd (creating, changing or stopping a unit): never on the cgroupfs paths.

jeepney provides the wire format (marshalling, the SASL EXTERNAL handshake); the loop here is
ours because it must work on two kinds of connection, as runc's go-systemd does:

* the system bus (``/run/dbus/system_bus_socket``, dbus-daemon), which needs ``Hello`` and an
  ``AddMatch`` before signals reach us;
* systemd's private socket (``/run/systemd/private``, root only), a peer-to-peer connection
  with no bus daemon: no ``Hello``, and signals come to whoever called ``Subscribe``.

Jobs: ``StartTransientUnit``/``StopUnit`` return a job object path at once; the work is done
when systemd emits ``JobRemoved`` for that path.  Signals that arrive while we wait for a method
reply are kept, since the job can finish before its reply is read.
"""

from __future__ import annotations

import os
import time

from ociruntime.errors import OCIError

TYPE_CHECKING = False
if TYPE_CHECKING:
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


class Connection:
    """One authenticated connection to systemd; use as a context manager."""

    def __init__(self, sock: Any, bus: bool) -> None:
        from jeepney import Parser

        self.sock = sock
        self.bus = bus
        self.parser = Parser()
        self.serial = 0
        self.signals: list[Any] = []
        if bus:
            self._call_bus("Hello", None, ())

    @classmethod
    def open(cls, socket_path: str | None = None) -> Connection:
        """The system bus if it answers, else (as root) systemd's private socket."""
        from jeepney.io.blocking import prep_socket

        candidates = [(socket_path, socket_path != PRIVATE_SOCKET)] if socket_path else [
            (SYSTEM_BUS, True), (PRIVATE_SOCKET, False)]
        errors = []
        for path, bus in candidates:
            if not bus and os.geteuid() != 0 and not socket_path:
                continue
            try:
                sock = prep_socket(path, timeout=CALL_TIMEOUT)
            except (OSError, ValueError) as exc:  # ValueError: jeepney's AuthenticationError
                errors.append(f"{path}: {exc.strerror if isinstance(exc, OSError) else exc}")
                continue
            try:
                return cls(sock, bus)
            except BaseException:
                sock.close()
                raise
        raise OCIError("cannot connect to systemd over D-Bus (" + "; ".join(errors) + ")")

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
