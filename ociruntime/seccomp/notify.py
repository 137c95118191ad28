"""Hand a seccomp notify listener fd to the agent at ``linux.seccomp.listenerPath``.

config-linux.md "Seccomp": when a profile uses SCMP_ACT_NOTIFY the runtime connects to the UNIX
socket at ``listenerPath`` and sends, in one message, the container process state as JSON with
the listener fd attached via SCM_RIGHTS (the fd's name in ``fds`` matches its position in the
SCM_RIGHTS array).  The parent calls this after the init passed the fd up, so the module is
stdlib only (no pyseccomp) and cheap to import.  Failures read as runc's
(libcontainer/process_linux.go sendContainerProcessState, quoting Go's net errors).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from ociruntime.errors import OCIError

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

    Raises OCIError, worded as runc's, when the agent is not there or refuses the message.
    """
    payload = json.dumps(process_state(state, metadata), separators=(",", ":")).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(listener_path)
        except OSError as exc:
            # Go's net.Dial error: "dial unix PATH: connect: REASON".
            raise OCIError("failed to connect with seccomp agent specified in the seccomp profile: "
                           f"dial unix {listener_path}: connect: {_reason(exc)}") from None
        try:
            sent = socket.send_fds(sock, [payload], [fd])
            # The fd rides on the first byte, so a short write cannot lose it; finish the JSON.
            if sent < len(payload):
                sock.sendall(payload[sent:])
        except OSError as exc:
            raise OCIError(f"cannot send seccomp fd to {listener_path}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
