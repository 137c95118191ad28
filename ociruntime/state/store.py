"""The state store: one directory per container under ``--root``.

Layout::

    <root>/                     mode 0700, created on first use
      <id>/                     mode 0700; flock(2) on this directory serializes commands on one id
        state.json              written atomically (temp file + rename), mode 0600
        exec.fifo               exists from create until start: the init blocks opening it
        seccomp.json            the container's linux.seccomp, for exec (never re-read from the bundle)

``state.json`` holds the OCI state fields plus what later commands need to act without reading
config.json again (init start time, cgroup manager state, hooks for poststart/poststop).
"""

from __future__ import annotations

import errno
import fcntl
import os

from ociruntime import jsonio
from ociruntime.errors import ContainerExists, ContainerNotFound, OCIError
from ociruntime.state.ids import validate_id
from ociruntime.state.proc import is_alive

STATE_FILE = "state.json"
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


class Record:
    """What ``state.json`` stores.  ``status`` is derived, never trusted from disk alone.

    A plain class rather than a dataclass: `dataclasses` imports `inspect`, ~7 ms on every
    `state`/`start`/`kill`/`delete`.
    """

    FIELDS = ("id", "bundle", "rootfs", "created", "pid", "pid_start", "owner", "oci_version",
              "annotations", "cgroup", "hooks", "own_pid_ns", "started", "kept_mounts")

    def __init__(self, id: str, bundle: str, rootfs: str, created: str, pid: int = 0,
                 pid_start: int = 0, owner: str = "", oci_version: str = "1.3.0",
                 annotations: dict[str, str] | None = None, cgroup: dict | None = None,
                 hooks: dict[str, list] | None = None, own_pid_ns: bool = True,
                 started: bool = False, kept_mounts: list[int] | None = None) -> None:
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
        try:
            fd = os.open(STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            raise ContainerNotFound(self.id) from None
        with os.fdopen(fd, "rb") as f:
            data = jsonio.loads(f.read())
        return Record(**data)

    def save(self, rec: Record) -> None:
        self.write_file(STATE_FILE, jsonio.dumps(rec.to_dict()).encode())

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
        if self.has_fifo() and not rec.started:
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

        Through the locked directory's fd, so a symlink or rename under --root cannot point the
        removal elsewhere; errors are ignored (best effort, like ``rmtree(ignore_errors=True)``)
        and `shutil` (which drags in `fnmatch` and `re`) stays unimported.
        """
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


class Store:
    """Access to ``--root``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _ensure_root(self) -> None:
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise OCIError(f"create state root {self.root}: {os.strerror(e.errno or 0).lower()}") from e

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
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise ContainerExists(f'container with id "{container_id}" already exists') from None
        return self._lock(path, container_id)

    def open(self, container_id: str) -> ContainerDir:
        """Lock an existing container directory (``container does not exist`` otherwise)."""
        validate_id(container_id)
        cdir = self._lock(os.path.join(self.root, container_id), container_id)
        if not os.path.exists(os.path.join(cdir.path, STATE_FILE)):
            # A create still in progress, or one that died before writing state: not a container.
            cdir.close()
            raise ContainerNotFound(container_id)
        return cdir

    def remove_stale(self, container_id: str) -> None:
        """Remove ``<root>/<id>`` if it exists without a state.json (a create that died).

        Taken under the directory lock, so a create still running (which holds it) is waited
        for, and a directory that meanwhile got its state.json is left alone.
        """
        validate_id(container_id)
        path = os.path.join(self.root, container_id)
        try:
            cdir = self._lock(path, container_id)
        except ContainerNotFound:
            return
        with cdir:
            if not os.path.exists(os.path.join(path, STATE_FILE)):
                cdir.remove()

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith("."))
