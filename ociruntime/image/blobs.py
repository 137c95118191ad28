"""Where an image's bytes are: the files of a layout directory or the members of a tar, read
in place, and verified as they are read.

A directory is read with openat2(RESOLVE_IN_ROOT) (a symlink in it resolves inside it) and
O_NONBLOCK (a FIFO under a blob's name cannot hang us); a tar through ``tarfile`` members, never
extracted: member names are lookup keys only, links between members are resolved inside the
archive, and a name read from the image's own JSON must be a clean relative path.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile

from ociruntime.errors import ImageError
from ociruntime.image.digest import CHUNK, format_digest
from ociruntime.image.tarinfo import BoundedTarInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MAX_JSON = 8 << 20          # index, manifest, config: far above real ones (a long history: ~100 KiB)
MAX_ARCHIVE_MEMBERS = 1 << 16  # members of an image archive (not of a layer): blobs + a few files
MAX_LINK_HOPS = 8           # symlinks/hard links between members of an archive (old docker save)


def fail(source: str, msg: str) -> ImageError:
    return ImageError(f"image {source}: {msg}")


class VerifiedReader:
    """A read-only binary stream over a blob that checks its size and digest.

    Reading beyond ``size`` bytes raises at once; reaching the end raises unless exactly ``size``
    bytes were read and (with a ``digest``) their sha256 matches.  ``verified`` is True after a
    successful end.  The consumer must read to the end (``read`` returning b"") before trusting
    anything it derived from the bytes.
    """

    def __init__(self, raw: BinaryIO, size: int, digest: str | None, what: str) -> None:
        self._raw = raw
        self._size = size
        self._digest = digest
        self._what = what
        self._hash = hashlib.sha256()
        self._count = 0
        self.verified = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if self.verified:
            return b""
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        want = min(n, self._size - self._count + 1)  # one byte more reveals an oversized blob
        data = self._raw.read(want)
        if data:
            self._count += len(data)
            if self._count > self._size:
                raise ImageError(f"{self._what}: blob is larger than the {self._size} bytes its "
                                 "descriptor says")
            self._hash.update(data)
            return data
        self._finish()
        return b""

    def _finish(self) -> None:
        if self._count != self._size:
            raise ImageError(f"{self._what}: blob has {self._count} bytes, its descriptor says {self._size}")
        got = format_digest(self._hash.hexdigest())
        if self._digest is not None and got != self._digest:
            raise ImageError(f"{self._what}: digest mismatch: blob is {got}, expected {self._digest}")
        self.verified = True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

def clean_relpath(name: object, what: str) -> str:
    """A path inside the source: relative, no "..", "./" and duplicate slashes dropped."""
    if not isinstance(name, str) or not name:
        raise ImageError(f"{what}: expected a path, got {name!r}")
    if name.startswith("/") or "\0" in name:
        raise ImageError(f"{what}: {name!r} is not a relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ImageError(f"{what}: {name!r} is not a path inside the archive")
    return "/".join(parts)


class Files:
    """The files of a layout, by relative path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> tuple[BinaryIO, int]:
        """A binary stream and the size of the regular file ``name``; ImageError if missing."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _DirFiles(Files):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def _open_fd(self, name: str, flags: int) -> int:
        # Imported here: openat2 loads libc through ctypes, which only this reader needs.
        from ociruntime.rootfs.resolve import open_in_root

        return open_in_root(self._fd, name, flags, name=name)

    def exists(self, name: str) -> bool:
        try:
            os.close(self._open_fd(name, os.O_PATH))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise fail(self.source, f"{name}: {os.strerror(e.errno or 0).lower()}") from None
        return True

    def open(self, name: str) -> tuple[BinaryIO, int]:
        try:
            # O_NONBLOCK: a FIFO planted under a blob's name must not hang us (no effect on files)
            fd = self._open_fd(name, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise fail(self.source, f"{name} is missing") from None
        except OSError as e:
            raise fail(self.source, f"{name}: {os.strerror(e.errno or 0).lower()}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise fail(self.source, f"{name} is not a regular file")
        return os.fdopen(fd, "rb"), st.st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _TarFiles(Files):
    """Members of a tar archive (optionally compressed), read in place."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        try:
            self._tar = tarfile.open(path, "r:*", tarinfo=BoundedTarInfo)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise fail(path, f"not a directory or a readable tar archive ({e})") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            count = 0
            while (m := self._tar.next()) is not None:
                count += 1
                if count > MAX_ARCHIVE_MEMBERS:
                    raise fail(path, f"more than {MAX_ARCHIVE_MEMBERS} members: not an image archive")
                if m.isdir():
                    continue
                try:
                    name = clean_relpath(m.name, "member")
                except ImageError:
                    continue  # never looked up: names we read are clean
                if name in self._members:
                    raise fail(path, f"two members named {name}")
                self._members[name] = m
        except (tarfile.TarError, OSError, EOFError) as e:
            self._tar.close()
            raise fail(path, f"corrupt tar archive ({e})") from None
        except BaseException:
            self._tar.close()
            raise

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        m = self._members.get(name)
        for _ in range(MAX_LINK_HOPS):
            if m is None or m.isreg():
                return m
            if m.issym():
                base = name.rpartition("/")[0]
                target = m.linkname if m.linkname.startswith("/") else f"{base}/{m.linkname}"
                name = _normalize_link(target)
            elif m.islnk():
                name = _normalize_link(m.linkname)
            else:
                raise fail(self.source, f"{name} is not a regular file")
            m = self._members.get(name)
        raise fail(self.source, f"{name}: too many links between members")

    def exists(self, name: str) -> bool:
        return self._resolve(name) is not None

    def open(self, name: str) -> tuple[BinaryIO, int]:
        m = self._resolve(name)
        if m is None:
            raise fail(self.source, f"{name} is missing")
        f = self._tar.extractfile(m)
        assert f is not None  # a regular member
        return f, m.size  # type: ignore[return-value]

    def close(self) -> None:
        self._tar.close()


def _normalize_link(target: str) -> str:
    out: list[str] = []
    for p in target.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not out:
                raise ImageError(f"archive link target {target!r} leaves the archive")
            out.pop()
        else:
            out.append(p)
    return "/".join(out)


def open_files(path: str) -> Files:
    try:
        st = os.stat(path)
    except OSError as e:
        raise fail(path, os.strerror(e.errno or 0).lower()) from None
    if stat.S_ISDIR(st.st_mode):
        return _DirFiles(path)
    if stat.S_ISREG(st.st_mode):
        return _TarFiles(path)
    raise fail(path, "not a directory or a tar archive")

# --- JSON documents ----------------------------------------------------------------------------

def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{what}: invalid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what}: expected a JSON object")
    return doc


def read_all(f: BinaryIO, size: int, what: str) -> bytes:
    if size > MAX_JSON:
        raise ImageError(f"{what}: {size} bytes is more than the {MAX_JSON} allowed for a JSON document")
    with f:
        return f.read(size + 1)


def read_plain_json(files: Files, name: str) -> dict[str, Any]:
    f, size = files.open(name)
    data = read_all(f, size, f"image {files.source}: {name}")
    return parse_json(data, f"image {files.source}: {name}")


def read_blob_json(files: Files, name: str, digest: str | None, size: int | None, what: str) -> bytes:
    """A JSON blob's bytes, checked against ``size`` and ``digest`` (None: not known) before use."""
    f, actual = files.open(name)
    what = f"image {files.source}: {what}"
    data = read_all(f, actual, what)
    if size is not None and len(data) != size:
        raise ImageError(f"{what}: blob has {len(data)} bytes, its descriptor says {size}")
    if digest is not None:
        got = format_digest(hashlib.sha256(data).hexdigest())
        if got != digest:
            raise ImageError(f"{what}: digest mismatch: blob is {got}, expected {digest}")
    return data
