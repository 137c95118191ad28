"""The state store: one directory per container under ``--root``.

Layout::

    <root>/                     mode 0700, created on first use
      <id>/                     mode 0700; flock(2) on this directory serializes commands on one id
        intent.json             create's intent record, written before it makes anything outside
                                this directory (see below); kept until the directory goes
        state.json              written atomically (temp file + rename), mode 0600; its presence
                                is what makes the directory a container
        exec.fifo               exists from create until start: the init blocks opening it
        seccomp.json            the container's linux.seccomp, for exec (never re-read from the bundle)
        resources.json          the merged resources of `update` (lifecycle/update.py)
        .<name>.<pid>           the temp file of an atomic write; one left by a killed writer is
                                ignored and goes with the directory

``state.json`` holds the OCI state fields plus what later commands need to act without reading
config.json again (init start time, cgroup manager state, hooks for poststart/poststop).

Crash safety: every file is written temp + rename, so a reader sees the old or the new content,
never a torn one.  ``create`` can be killed at any moment, so before it makes anything outside
the state directory it records what it is about to make in ``intent.json`` (:class:`Intent`):
the cgroup directories that do not exist yet (a pre-existing one is never ours to remove), the
rootfs and the mounts already beneath it (a container without a mount namespace mounts into
ours), and, as soon as known, the init's pid and start time.  ``delete --force`` of a directory
without a readable state.json (a create killed before saving it) undoes exactly that
(lifecycle/delete.py ``recover``); ``state``, ``list`` and ``delete`` without --force treat such
a directory as no container at all ("container does not exist").
"""

from __future__ import annotations

import errno
import fcntl
import os

from ociruntime import jsonio
from ociruntime.errors import ContainerExists, ContainerNotFound, OCIError
from ociruntime.state.ids import validate_id
from ociruntime.state.proc import exec_done, is_alive

STATE_FILE = "state.json"
INTENT_FILE = "intent.json"
FIFO_NAME = "exec.fifo"


def _clear_dir(dir_fd: int) -> None:
    """Remove everything inside the directory open at ``dir_fd``, never following symlinks."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return
    for name in names:
        try:
            os.unlink(name, dir_fd=dir_fd)
            continue
        except IsADirectoryError:
            pass
        except OSError:
            continue
        try:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            _clear_dir(sub)
        finally:
            os.close(sub)
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError:
            pass


class StateCorrupt(OCIError):
    """state.json exists but cannot be read as a container record (truncated, edited, empty)."""

    def __init__(self, container_id: str, reason: str) -> None:
        super().__init__(f"container {container_id}: state.json is unreadable ({reason}); "
                         "`delete --force` removes the container")
        self.container_id = container_id


class Record:
    """What ``state.json`` stores.  ``status`` is derived, never trusted from disk alone.

    A plain class rather than a dataclass: `dataclasses` imports `inspect`, ~7 ms on every
    `state`/`start`/`kill`/`delete`.
    """

    FIELDS = ("id", "bundle", "rootfs", "created", "pid", "pid_start", "owner", "oci_version",
              "annotations", "cgroup", "hooks", "own_pid_ns", "started", "kept_mounts", "init_exe")
    REQUIRED = ("id", "bundle", "rootfs", "created")

    def __init__(self, id: str, bundle: str, rootfs: str, created: str, pid: int = 0,
                 pid_start: int = 0, owner: str = "", oci_version: str = "1.3.0",
                 annotations: dict[str, str] | None = None, cgroup: dict | None = None,
                 hooks: dict[str, list] | None = None, own_pid_ns: bool = True,
                 started: bool = False, kept_mounts: list[int] | None = None,
                 init_exe: list[int] | None = None) -> None:
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.pid = pid
        self.pid_start = pid_start
        self.owner = owner
        self.oci_version = oci_version
        self.annotations = annotations if annotations is not None else {}
        self.cgroup = cgroup if cgroup is not None else {}
        self.hooks = hooks if hooks is not None else {}
        self.own_pid_ns = own_pid_ns
        self.started = started
        # None: the container had a mount namespace of its own.  A list: it mounted into the
        # runtime's, and delete unmounts everything beneath the rootfs but these mount ids,
        # which were there before create (rootfs/cleanup.py).
        self.kept_mounts = kept_mounts
        # [st_dev, st_ino] of the init's executable while it waits for `start` (the runtime's
        # interpreter).  Once the init has exec'd the user process it differs: then the init is
        # started even if a `start` killed mid-way left exec.fifo and `started` behind.
        self.init_exe = init_exe

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def oci_state(self, status: str) -> dict:
        """The runtime.md state object, as given to hooks and printed by ``state``."""
        return {"ociVersion": self.oci_version, "id": self.id, "status": status,
                "pid": self.pid if status != "stopped" else 0, "bundle": self.bundle,
                "rootfs": self.rootfs, "created": self.created, "owner": self.owner,
                "annotations": self.annotations}


class Intent:
    """``intent.json``: what ``create`` is about to make outside the state directory.

    Written (atomically) before the first cgroup directory is made, and again once the init's
    pid is known, before the init mounts anything.  ``cgroup`` is the manager state as it will be
    after ``Manager.create`` (``created`` lists only directories that did not exist yet);
    ``kept_mounts`` is None for a container with its own mount namespace, else the ids of the
    mounts that were beneath ``rootfs`` before create (never ours to unmount).
    """

    FIELDS = ("cgroup", "rootfs", "kept_mounts", "pid", "pid_start")

    def __init__(self, cgroup: dict | None = None, rootfs: str = "",
                 kept_mounts: list[int] | None = None, pid: int = 0, pid_start: int = 0) -> None:
        self.cgroup = cgroup if cgroup is not None else {}
        self.rootfs = rootfs
        self.kept_mounts = kept_mounts
        self.pid = pid
        self.pid_start = pid_start

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, data: object) -> Intent:
        """Check the shape (ValueError otherwise): delete acts on these values as root."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        cgroup, rootfs = data.get("cgroup", {}), data.get("rootfs", "")
        kept, pid, pid_start = data.get("kept_mounts"), data.get("pid", 0), data.get("pid_start", 0)
        if not isinstance(cgroup, dict) or not isinstance(rootfs, str):
            raise ValueError("bad cgroup or rootfs")
        if kept is not None and not (isinstance(kept, list) and all(_is_int(i) for i in kept)):
            raise ValueError("bad kept_mounts")
        if not (_is_int(pid) and _is_int(pid_start)):
            raise ValueError("bad pid")
        return cls(cgroup, rootfs, kept, pid, pid_start)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class ContainerDir:
    """A locked container directory.  Use as a context manager; the lock drops on exit."""

    def __init__(self, path: str, fd: int, container_id: str) -> None:
        self.path = path
        self.fd = fd
        self.id = container_id

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.path, FIFO_NAME)

    def load(self) -> Record:
        """The record in state.json: ContainerNotFound without one, StateCorrupt if unreadable."""
        raw = self.read_file(STATE_FILE)
        if raw is None:
            raise ContainerNotFound(self.id)
        try:
            data = jsonio.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in Record.REQUIRED if k not in data]
            if missing:
                raise ValueError(f"no {missing[0]!r}")
            # Unknown keys are ignored: a newer runtime's record is still deletable.
            rec = Record(**{k: data[k] for k in Record.FIELDS if k in data})
            if not (_is_int(rec.pid) and _is_int(rec.pid_start) and isinstance(rec.cgroup, dict)):
                raise ValueError("bad pid or cgroup")
        except (ValueError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError included
            raise StateCorrupt(self.id, str(e) if raw else "empty") from None
        return rec

    def save(self, rec: Record) -> None:
        self.write_file(STATE_FILE, jsonio.dumps(rec.to_dict()).encode())

    def save_intent(self, intent: Intent) -> None:
        self.write_file(INTENT_FILE, jsonio.dumps(intent.to_dict()).encode())

    def load_intent(self) -> Intent | None:
        """The intent record; None when there is none.  ValueError/OSError if unreadable."""
        raw = self.read_file(INTENT_FILE)
        return None if raw is None else Intent.from_dict(jsonio.loads(raw))

    def read_file(self, name: str) -> bytes | None:
        """The content of ``name`` in the directory (never through a symlink); None if absent."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def write_file(self, name: str, data: bytes) -> None:
        """Write ``name`` in the directory atomically (temp file + rename), mode 0600."""
        tmp = f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def status(self, rec: Record) -> str:
        """Derive the OCI status from the init process, its start time and the exec fifo."""
        if not is_alive(rec.pid, rec.pid_start):
            return "stopped"
        if self.has_fifo() and not rec.started and not exec_done(rec.pid, rec.init_exe):
            return "created"
        if rec.cgroup:
            from ociruntime.cgroups import manager_from_state

            try:
                if manager_from_state(rec.cgroup).is_frozen():
                    return "paused"
            except (OSError, OCIError):
                pass
        return "running"

    def has_fifo(self) -> bool:
        try:
            os.stat(FIFO_NAME, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def remove(self) -> None:
        """Delete the directory (we still hold the lock; waiters then see it gone).

        state.json goes first: should we be killed halfway, what is left is no container, and
        ``delete --force`` finishes it (everything outside the directory is gone by now).
        Through the locked directory's fd, so a symlink or rename under --root cannot point the
        removal elsewhere; errors are ignored (best effort, like ``rmtree(ignore_errors=True)``)
        and `shutil` (which drags in `fnmatch` and `re`) stays unimported.
        """
        try:
            os.unlink(STATE_FILE, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        _clear_dir(self.fd)
        try:
            os.rmdir(self.path)
        except OSError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ContainerDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rootless_hint(e: OSError) -> str:
    """An unprivileged caller denied the state root: say where it should be (cli/main.py)."""
    if e.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        return " (rootless: set XDG_RUNTIME_DIR or pass --root)"
    return ""


class Store:
    """Access to ``--root``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _ensure_root(self) -> None:
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise OCIError(f"create state root {self.root}: {os.strerror(e.errno or 0).lower()}"
                           f"{_rootless_hint(e)}") from e

    def _lock(self, path: str, container_id: str) -> ContainerDir:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(container_id) from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ContainerNotFound(container_id) from None
            raise
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A concurrent delete may have removed the directory while we waited for the lock.
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)
            raise ContainerNotFound(container_id)
        return ContainerDir(path, fd, container_id)

    def create(self, container_id: str) -> ContainerDir:
        """Make and lock a new container directory; the id must not be in use."""
        validate_id(container_id)
        self._ensure_root()
        path = os.path.join(self.root, container_id)
        for _ in range(10):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                raise ContainerExists(f'container with id "{container_id}" already exists') from None
            except PermissionError as e:
                hint = _rootless_hint(e)
                raise OCIError(f"create state directory {path}: permission denied{hint}") from None
            try:
                return self._lock(path, container_id)
            except ContainerNotFound:
                # Between our mkdir and flock, a `delete --force` of this id locked the empty
                # directory and removed it as a dead create's leftovers: make it again.
                continue
        raise OCIError(f"create state directory {path}: removed concurrently again and again")

    def open(self, container_id: str) -> ContainerDir:
        """Lock an existing container directory (``container does not exist`` otherwise)."""
        validate_id(container_id)
        cdir = self._lock(os.path.join(self.root, container_id), container_id)
        if not os.path.exists(os.path.join(cdir.path, STATE_FILE)):
            # A create still in progress, or one that died before writing state: not a container.
            cdir.close()
            raise ContainerNotFound(container_id)
        return cdir

    def open_any(self, container_id: str) -> ContainerDir | None:
        """Lock ``<root>/<id>`` whatever it holds, also a dead create's leftovers without a
        state.json (for ``delete --force``); None when there is no such directory.

        Under the directory lock a create still running (which holds it) is waited for: what
        is found then is a finished container, or what a killed create left.
        """
        validate_id(container_id)
        try:
            return self._lock(os.path.join(self.root, container_id), container_id)
        except ContainerNotFound:
            return None

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith("."))
