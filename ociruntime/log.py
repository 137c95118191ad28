"""Diagnostics: the ``--log`` file (text or JSON lines) and stderr.

Clients read this file back (CLIENTS.md): containerd keeps the last line whose level is
``error``; podman reads it as one JSON object.  So an error is exactly one line, appended.
JSON lines are written as Go's encoding/json (logrus's JSONFormatter) writes them: compact.
On success nothing is printed to stdout/stderr: the caller's stdio belongs to the container,
unless ``--debug`` asked for debug lines and there is no ``--log`` file to take them.
"""

from __future__ import annotations

import os
import sys
import time

from ociruntime import gojson, jsonio

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    """Writes leveled messages to the ``--log`` file; errors and warnings also reach stderr."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.fmt = "text"
        self.debug_enabled = False

    def configure(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path or None
        self.fmt = fmt
        self.debug_enabled = debug

    @staticmethod
    def _now() -> str:
        t = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"

    def open_for_child(self) -> int:
        """An append-only, close-on-exec fd on the log file for a forked child, or -1."""
        if not self.path:
            return -1
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return -1

    def format_line(self, level: str, msg: str) -> str:
        """One line in the configured format (the container init writes it to an inherited fd)."""
        return self._line(level, msg)

    def _line(self, level: str, msg: str) -> str:
        if self.fmt == "json":
            return gojson.dumps({"level": level, "msg": msg, "time": self._now()}) + "\n"
        return f'time="{self._now()}" level={level} msg={jsonio.dumps(msg)}\n'

    def _append(self, line: str) -> bool:
        if not self.path:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return True

    def log(self, level: str, msg: str) -> None:
        if level == "debug" and not self.debug_enabled:
            return
        line = self._line(level, msg)
        logged = self._append(line)
        # Errors always reach stderr (clients show it); warnings only when there is no log file,
        # so a successful create prints nothing on the caller's stdio.  Debug lines without a
        # log file go to stderr whole (time, level), where runc's logger writes by default.
        if level == "error" or (level == "warning" and not logged):
            self._stderr(f"{'' if level == 'error' else level + ': '}{msg}\n")
        elif level == "debug" and not logged:
            self._stderr(line)

    @staticmethod
    def _stderr(text: str) -> None:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def error(self, msg: str) -> None:
        self.log("error", msg)

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def info(self, msg: str) -> None:
        self.log("info", msg)

    def debug(self, msg: str) -> None:
        self.log("debug", msg)


LOG = Logger()
