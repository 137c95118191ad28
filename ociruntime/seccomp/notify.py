"""Hand a seccomp notify listener fd to the agent at ``linux.seccomp.listenerPath``.

config-linux.md "Seccomp": when a profile uses SCMP_ACT_NOTIFY the runtime connects to the UNIX
socket at ``listenerPath`` and sends, in one message, the container process state as JSON with
the listener fd attached via SCM_RIGHTS (the fd's name in ``fds`` matches its position in the
SCM_RIGHTS array).  The parent calls this after the init passed the fd up, so the module is
stdlib only (no pyseccomp) and cheap to import.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from typing import Any

SECCOMP_FD_NAME = "seccompFd"


def process_state(state: Mapping[str, Any], metadata: str) -> dict[str, Any]:
    """Build the spec's "container process state" object around the container ``state``."""
    doc: dict[str, Any] = {
        "ociVersion": state.get("ociVersion", ""),
        "fds": [SECCOMP_FD_NAME],
        "pid": state.get("pid", 0),
        "state": dict(state),
    }
    if metadata:
        doc["metadata"] = metadata
    return doc


def send_listener(fd: int, listener_path: str, state: Mapping[str, Any], metadata: str) -> None:
    """Connect to ``listener_path`` and send the process state JSON with ``fd`` (SCM_RIGHTS).

    Raises OSError naming the socket path when the agent is not there or refuses the message.
    """
    payload = json.dumps(process_state(state, metadata), separators=(",", ":")).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        _call(sock.connect, "connect", listener_path, listener_path)
        sent = _call(socket.send_fds, "sendmsg", listener_path, sock, [payload], [fd])
        # The fd rides on the first byte, so a short write cannot lose it; finish the JSON.
        if sent < len(payload):
            _call(sock.sendall, "sendmsg", listener_path, payload[sent:])


def _call(fn: Callable[..., Any], call: str, path: str, *args: Any) -> Any:
    """Run one socket call, re-raising its OSError as ``call: reason`` with the socket path."""
    try:
        return fn(*args)
    except OSError as exc:
        raise OSError(exc.errno, f"{call}: {exc.strerror}", path) from exc
