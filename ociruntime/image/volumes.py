"""Volumes of a bundle made from an image: named, bind, tmpfs and anonymous (image VOLUMEs).

* ``--volume NAME:/path[:ro]`` -- a named volume, ``<store>/volumes/NAME/_data``: created on
  first use and then seeded with what the image has at /path (as docker does), kept when the
  bundle is deleted, shared by every bundle naming it.
* ``--bind HOST:/path[:ro]`` -- a host path, bound as it is.
* ``--tmpfs /path[:OPTIONS]`` -- a fresh tmpfs (OPTIONS: tmpfs's, comma separated).
* an image ``VOLUME`` no flag covers becomes an anonymous volume, ``DIR/volumes/<n>``, seeded the
  same way and removed with the bundle (docker's ``rm -v``).

Seeding reads the image's content through the rootfs with every path resolved inside it
(openat2 RESOLVE_IN_ROOT): a symlinked /path in the image cannot make us copy host files.
A named volume is published by its ``volume.json``, written after seeding, under the store's
volume lock: a directory without it is the leftover of a killed create and is seeded afresh.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re

from ociruntime.errors import ImageError, UsageError
from ociruntime.record import dataclass

VOLUMES = "volumes"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_DIR_RO = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class Volume:
    kind: str          # "volume" | "bind" | "tmpfs" | "anonymous"
    source: str        # volume name, host path, or "" (tmpfs, anonymous)
    destination: str   # absolute, clean path in the container
    readonly: bool = False
    options: tuple[str, ...] = ()   # tmpfs options


def clean_destination(path: str, what: str) -> str:
    """An absolute, normalized container path other than "/", without ".." components."""
    if not path.startswith("/"):
        raise UsageError(f"{what}: container path {path!r} must be absolute")
    if ".." in path.split("/"):
        raise UsageError(f"{what}: container path {path!r} must not contain '..'")
    clean = posixpath.normpath(path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise UsageError(f"{what}: cannot mount over the container's root")
    return clean


def _split(flag: str, text: str, source: str) -> tuple[str, str, bool, str]:
    """``SOURCE:/path[:ro|rw]`` -> source, clean destination, read-only, the flag for errors."""
    what = f"{flag} {text}"
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"{what}: expected {source}:/path[:ro]")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"{what}: unknown mode {mode!r} (ro or rw)")
    return parts[0], clean_destination(parts[1], what), mode == "ro", what


def parse_volume(text: str) -> Volume:
    name, dest, ro, what = _split("--volume", text, "NAME")
    if not _NAME.match(name):
        raise UsageError(f"{what}: volume name {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]*")
    return Volume("volume", name, dest, ro)


def parse_bind(text: str) -> Volume:
    host, dest, ro, what = _split("--bind", text, "HOST")
    if not host.startswith("/"):
        raise UsageError(f"{what}: host path {host!r} must be absolute")
    if not os.path.exists(host):
        raise UsageError(f"{what}: host path {host} does not exist")
    return Volume("bind", posixpath.normpath(host), dest, ro)


def parse_tmpfs(text: str) -> Volume:
    path, _, opts = text.partition(":")
    what = f"--tmpfs {text}"
    options = tuple(o for o in opts.split(",") if o)
    return Volume("tmpfs", "", clean_destination(path, what), False, options)


def plan_volumes(explicit: list[Volume], image_volumes: list[str]) -> list[Volume]:
    """The explicit volumes plus an anonymous one per image VOLUME none of them covers;
    ordered by depth so a parent is mounted before what is mounted inside it."""
    seen: dict[str, Volume] = {}
    for v in explicit:
        if v.destination in seen:
            raise UsageError(f"two volumes for {v.destination}")
        seen[v.destination] = v
    out = list(explicit)
    for dest in image_volumes:
        if dest not in seen:
            out.append(Volume("anonymous", "", dest))
    out.sort(key=lambda v: (v.destination.count("/"), v.destination))
    return out


def mount_entry(v: Volume, source: str) -> dict[str, object]:
    """The config.json mount for ``v`` whose host side is ``source``."""
    if v.kind == "tmpfs":
        return {"destination": v.destination, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", *(v.options or ("mode=1777",))]}
    return {"destination": v.destination, "type": "bind", "source": source,
            "options": ["rbind", "ro" if v.readonly else "rw"]}


def seed(rootfs: str, destination: str, target: str) -> None:
    """Copy what the image has at ``destination`` into the empty directory ``target``.

    Nothing there: nothing to copy.  A non-directory there cannot take a volume.
    """
    from ociruntime.image.flatten import copy_tree
    from ociruntime.rootfs.resolve import open_in_root

    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            src = open_in_root(rootfd, destination.lstrip("/"), _DIR_RO)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            if e.errno == errno.ENOTDIR:
                raise ImageError(f"volume {destination}: the image has a file there, not a "
                                 "directory") from None
            raise ImageError(f"volume {destination}: {os.strerror(e.errno or 0)}") from None
    finally:
        os.close(rootfd)
    try:
        dst = os.open(target, _DIR_RO)
        try:
            st = os.fstat(src)
            copy_tree(src, dst)
            # the volume's root takes the image directory's owner and mode, as docker's copy-up
            os.fchown(dst, st.st_uid, st.st_gid)
            os.fchmod(dst, st.st_mode & 0o7777)
        finally:
            os.close(dst)
    finally:
        os.close(src)


class VolumeStore:
    """Named volumes under ``<store>/volumes``."""

    def __init__(self, store: str) -> None:
        self.root = os.path.join(store, VOLUMES)

    def data(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.root, name, "volume.json"))

    def names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root) if self.exists(n))
        except FileNotFoundError:
            return []

    def ensure(self, name: str, rootfs: str, destination: str) -> tuple[str, bool]:
        """The volume's data directory, created and seeded from ``rootfs`` if new; and whether
        this call created it (for the caller's undo)."""
        from ociruntime.image.layers import remove_tree

        # The lock and the crash-safe writer are the network code's (network/fileio.py).
        from ociruntime.network.fileio import FileLock, dump, write_atomic

        with FileLock(os.path.join(self.root, ".lock")):
            if self.exists(name):
                return self.data(name), False
            vdir = os.path.join(self.root, name)
            remove_tree(vdir)  # a killed create's leftover (no volume.json)
            os.makedirs(self.data(name), 0o755)
            try:
                seed(rootfs, destination, self.data(name))
                meta = {"name": name, "seeded_from": destination}
                write_atomic(os.path.join(vdir, "volume.json"), dump(meta))
            except BaseException:
                remove_tree(vdir)
                raise
            return self.data(name), True

    def remove(self, name: str) -> None:
        from ociruntime.image.layers import remove_tree

        remove_tree(os.path.join(self.root, name))
