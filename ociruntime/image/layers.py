"""Apply one layer tar into a fresh directory, as an overlayfs lower layer; hostile-input safe.

The layer is streamed once: decompressed (gzip, or none), hashed (its DiffID is the sha256 of
the *uncompressed* stream, checked against the image config at the end) and extracted in the
same pass.  Any failure (a refused member, a limit, a corrupt stream, a wrong DiffID or blob
digest) removes the whole destination: nothing half-written remains.

Hostile input, and what stops it:

* names: an absolute name or a ``..`` component is refused (docker's own layers have neither);
  ``./`` prefixes are fine.  A name longer than ``Limits.max_path`` is refused.
* symlinks: every entry is created relative to its parent directory's fd, and parents are
  opened component by component from the layer root with O_NOFOLLOW|O_DIRECTORY, so a symlink
  the layer created earlier (``a -> /``, then ``a/etc/passwd``) is never followed: such a member
  is refused.  Each layer is extracted into its own empty directory (overlay form), so every
  entry we meet was made by this layer.  Metadata is applied to fds or with no-follow calls.
* hard links: the target must be a non-directory this same layer created earlier (resolved
  the same way, the final component not followed); anything else is refused.
* device nodes: created only when privileged (root), else skipped with a warning; never opened.
* ownership and mode (setuid, setgid, sticky) are kept when privileged; unprivileged, files
  stay ours and setuid/setgid are dropped.  Directories get their mode and mtime at the end (so
  a read-only directory can still be filled).
* xattrs (pax ``SCHILY.xattr.``): ``user.*``, ``security.capability``, POSIX ACLs and, when
  privileged, ``trusted.*``; never overlayfs's own ``trusted.overlay.*`` / ``user.overlay.*``
  (a layer could otherwise forge opaque dirs, redirects or metacopy).  Others are skipped with
  a warning, as are xattrs the filesystem refuses.
* limits (``Limits``): uncompressed bytes (the tar stream, and file data written: a sparse
  member counts its full size), member count, name length; tarfile's metadata headers are
  bounded by ``tarinfo.BoundedTarInfo``.
* a member whose size lies: too large runs into the end of the stream ("unexpected end of
  data"); too small makes the next header land in data, which tarfile takes for the end of the
  archive; so everything after the end-of-archive marker must be zero bytes.

Whiteouts, in overlayfs form: ``DIR/.wh.NAME`` becomes a 0/0 character device ``DIR/NAME``, and
``DIR/.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on DIR.  Unprivileged (or refused by the
kernel) they are not written; every whiteout, applied or not, is returned in
``LayerResult.whiteouts`` for the store to record, so a later copy-mode flattening can apply them
without overlayfs.  Other ``.wh..wh.`` names (aufs metadata) are skipped.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib

from ociruntime.errors import ImageError, describe_oserror
from ociruntime.image.digest import CHUNK, format_digest, validate_digest
from ociruntime.image.tarinfo import BoundedTarInfo
from ociruntime.record import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

TAR_BUFSIZE = 1 << 16
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Limits:
    """Bounds on one layer.  Defaults are far above real images (the largest common layers are a
    few GiB and ~100k files) and stop a decompression bomb or a billion empty files."""

    max_bytes: int = 32 << 30    # uncompressed tar stream, and the sum of file sizes written
    max_files: int = 2_000_000   # tar members
    max_path: int = 4096         # bytes in a member name or link target (PATH_MAX)


@dataclass(frozen=True)
class Whiteout:
    """A deletion this layer makes in the layers below: ``path`` (relative to the layer root)
    is deleted (kind "file", any type) or is a directory that hides everything below it
    (kind "opaque"; "" is the root).  ``applied``: written in overlayfs form."""

    path: str
    kind: str
    applied: bool

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "applied": self.applied}


@dataclass
class LayerResult:
    diff_id: str          # sha256 of the uncompressed stream
    size: int             # bytes of the uncompressed stream
    entries: int          # tar members
    whiteouts: list[Whiteout] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _HashingReader:
    """The uncompressed stream: hashed, counted against the limit, last non-zero byte tracked."""

    def __init__(self, raw: BinaryIO, limit: int, what: str) -> None:
        self._raw = raw
        self._limit = limit
        self._what = what
        self.hash = hashlib.sha256()
        self.count = 0
        self.nonzero_end = 0  # offset just past the last non-zero byte seen

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        data = self._raw.read(n)
        if data:
            start = self.count
            self.count += len(data)
            if self.count > self._limit:
                raise ImageError(f"{self._what}: uncompressed layer is larger than the limit of "
                                 f"{self._limit} bytes")
            self.hash.update(data)
            kept = len(data.rstrip(b"\0"))
            if kept:
                self.nonzero_end = start + kept
        return data


def _xattr_allowed(name: str, privileged: bool) -> bool:
    if name.startswith(("trusted.overlay.", "user.overlay.")):
        return False
    if name.startswith(("user.", "system.posix_acl_")) or name == "security.capability":
        return True
    return privileged and name.startswith("trusted.")


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree (no symlink followed; shutil's fd-based walk).  Directories an
    unprivileged extraction left read-only are made writable and retried.  Missing is fine."""

    def retry(func: object, p: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        exc = exc_info[1]
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError):
            try:
                os.chmod(os.path.dirname(p), 0o700)
                if os.path.isdir(p) and not os.path.islink(p):
                    os.chmod(p, 0o700)
                    shutil.rmtree(p, onerror=retry)
                else:
                    os.unlink(p)
                return
            except OSError:
                pass
        raise exc

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry)  # onexc from 3.12 on; onerror still works there


class _Extractor:
    def __init__(self, dest: str, limits: Limits, privileged: bool, what: str) -> None:
        self.limits = limits
        self.privileged = privileged
        self.what = what
        self.root = os.open(dest, _DIR_OPEN)
        self.entries = 0
        self.data_bytes = 0
        self.whiteouts: list[Whiteout] = []
        self.warnings: list[str] = []
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self._cache: tuple[tuple[str, ...], int] | None = None  # the last parent opened

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root)

    # -- errors and names --

    def fail(self, member: tarfile.TarInfo | None, msg: str) -> ImageError:
        where = f"member {member.name!r}: " if member is not None else ""
        return ImageError(f"{self.what}: {where}{msg}")

    def split(self, name: str, member: tarfile.TarInfo, what: str = "name") -> list[str]:
        if len(name.encode("utf-8", "surrogateescape")) > self.limits.max_path:
            raise self.fail(member, f"{what} longer than {self.limits.max_path} bytes")
        if "\0" in name:
            raise self.fail(member, f"{what} contains a NUL byte")
        if name.startswith("/"):
            raise self.fail(member, f"absolute {what} {name!r}")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.fail(member, f"{what} {name!r} has a '..' component")
        return parts

    # -- walking without following symlinks --

    def _drop_cache(self) -> None:
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None

    def open_dir(self, parts: list[str], member: tarfile.TarInfo | None, create: bool) -> int:
        """An O_RDONLY fd on the directory ``parts`` of the layer, walked with O_NOFOLLOW; missing
        components are created (0755) when ``create``.  The caller closes it."""
        key = tuple(parts)
        start = 0
        if self._cache is not None and key[: len(self._cache[0])] == self._cache[0]:
            if self._cache[0] == key:
                return os.dup(self._cache[1])
            start = len(self._cache[0])  # one level deeper than the last member: walk on from there
            fd = os.dup(self._cache[1])
        else:
            fd = os.dup(self.root)
        try:
            for i in range(start, len(parts)):
                comp = parts[i]
                try:
                    nxt = os.open(comp, _DIR_OPEN, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nxt = os.open(comp, _DIR_OPEN, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        shown = "/".join(parts[: i + 1])
                        raise self.fail(member, f"{shown} is a symlink or not a directory in this layer; "
                                                "refusing to write through it") from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        self._drop_cache()
        self._cache = (key, os.dup(fd))
        return fd

    def clear(self, pfd: int, base: str, keep_dir: bool) -> bool:
        """Remove whatever is at ``base`` (a later member replaces an earlier one, as tar does);
        an existing directory is kept when ``keep_dir`` (returns True then)."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._drop_cache()
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    # -- metadata --

    def xattrs(self, member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
        out = []
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if _xattr_allowed(name, self.privileged):
                out.append((name, value.encode("utf-8", "surrogateescape")))
            else:
                self.warnings.append(f"{member.name}: xattr {name} not applied")
        return out

    def mode(self, member: tarfile.TarInfo) -> int:
        mode = member.mode & 0o7777
        return mode if self.privileged else mode & ~(stat.S_ISUID | stat.S_ISGID)

    def mtime_ns(self, member: tarfile.TarInfo) -> int | None:
        try:
            return int(member.mtime * 1_000_000_000) if isinstance(member.mtime, float) \
                else int(member.mtime) * 1_000_000_000
        except (OverflowError, ValueError, TypeError):
            return None

    def set_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for name, value in self.xattrs(member):
            try:
                os.setxattr(fd, name, value)
            except OSError as e:
                self.warnings.append(f"{member.name}: xattr {name}: {os.strerror(e.errno or 0).lower()}")

    def meta_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        """Owner, mode, xattrs, mtime on an open regular file or directory (this order: chown
        clears setuid bits and file capabilities)."""
        if self.privileged:
            os.chown(fd, member.uid, member.gid)
        os.chmod(fd, self.mode(member))
        self.set_xattrs(fd, member)
        t = self.mtime_ns(member)
        if t is not None:
            os.utime(fd, ns=(t, t))

    def meta_at(self, pfd: int, base: str, member: tarfile.TarInfo, *, chmod: bool) -> None:
        """The same for an entry we must not open (symlink, device, fifo): no-follow calls."""
        if self.privileged:
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                if stat.S_ISLNK(os.fstat(fd).st_mode):
                    raise self.fail(member, "replaced by a symlink while being created")
                os.chmod(f"/proc/self/fd/{fd}", self.mode(member))
            finally:
                os.close(fd)
        if any(k.startswith("SCHILY.xattr.") for k in member.pax_headers):
            kind = "symlink" if member.issym() else "special file"
            self.warnings.append(f"{member.name}: xattrs on a {kind} not applied")
        t = self.mtime_ns(member)
        if t is not None:
            os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)

    # -- members --

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        try:
            self._member(tar, m)
        except OSError as e:
            raise self.fail(m, describe_oserror(e)) from None
        except (ValueError, OverflowError) as e:  # an embedded NUL, an id or device number too large
            raise self.fail(m, f"invalid value: {e}") from None

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise self.fail(None, f"more than {self.limits.max_files} entries")
        parts = self.split(m.name, m)
        if not parts:
            if not m.isdir():
                raise self.fail(m, "names the layer root but is not a directory")
            self.dirs.append((parts, m))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(m, parts)
            return
        pfd = self.open_dir(parts[:-1], m, create=True)
        try:
            if m.isreg():
                self.regular(tar, m, pfd, base)
            elif m.isdir():
                if not self.clear(pfd, base, keep_dir=True):
                    os.mkdir(base, 0o700, dir_fd=pfd)
                self.dirs.append((parts, m))
            elif m.issym():
                if len(m.linkname.encode("utf-8", "surrogateescape")) > self.limits.max_path:
                    raise self.fail(m, f"symlink target longer than {self.limits.max_path} bytes")
                self.clear(pfd, base, keep_dir=False)
                os.symlink(m.linkname, base, dir_fd=pfd)
                self.meta_at(pfd, base, m, chmod=False)
            elif m.islnk():
                self.hardlink(m, parts, pfd, base)
            elif m.ischr() or m.isblk():
                if not self.privileged:
                    self.warnings.append(f"{m.name}: device node skipped (not root)")
                    return
                self.clear(pfd, base, keep_dir=False)
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
                self.meta_at(pfd, base, m, chmod=True)
            elif m.isfifo():
                self.clear(pfd, base, keep_dir=False)
                os.mkfifo(base, 0o600, dir_fd=pfd)
                self.meta_at(pfd, base, m, chmod=True)
            else:
                self.warnings.append(f"{m.name}: unsupported tar member type {m.type!r} skipped")
        finally:
            os.close(pfd)

    def regular(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        self.data_bytes += m.size
        if self.data_bytes > self.limits.max_bytes:
            raise self.fail(m, f"layer content is larger than the limit of {self.limits.max_bytes} bytes")
        self.clear(pfd, base, keep_dir=False)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
        try:
            src = tar.extractfile(m)
            if src is not None:
                while chunk := src.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            self.meta_fd(fd, m)
        finally:
            os.close(fd)

    def hardlink(self, m: tarfile.TarInfo, parts: list[str], pfd: int, base: str) -> None:
        target = self.split(m.linkname, m, "hard link target")
        if not target:
            raise self.fail(m, "hard link to the layer root")
        if target == parts:
            self.warnings.append(f"{m.name}: hard link to itself ignored")
            return
        try:
            tfd = self.open_dir(target[:-1], m, create=False)
        except FileNotFoundError:
            raise self.fail(m, f"hard link target {m.linkname!r} is not in this layer") from None
        try:
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise self.fail(m, f"hard link target {m.linkname!r} is not in this layer") from None
            if stat.S_ISDIR(st.st_mode):
                raise self.fail(m, f"hard link target {m.linkname!r} is a directory")
            self.clear(pfd, base, keep_dir=False)
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def whiteout(self, m: tarfile.TarInfo, parts: list[str]) -> None:
        base = parts[-1]
        dir_parts = parts[:-1]
        if base == WHITEOUT_OPAQUE:
            pfd = self.open_dir(dir_parts, m, create=True)
            try:
                applied = False
                if self.privileged:
                    try:
                        os.setxattr(pfd, OPAQUE_XATTR, b"y")
                        applied = True
                    except OSError as e:
                        self.warnings.append(f"{m.name}: opaque directory recorded, not applied: "
                                             f"{os.strerror(e.errno or 0).lower()}")
            finally:
                os.close(pfd)
            self.whiteouts.append(Whiteout("/".join(dir_parts), "opaque", applied))
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            self.warnings.append(f"{m.name}: aufs metadata skipped")
            return
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise self.fail(m, "whiteout without a name")
        pfd = self.open_dir(dir_parts, m, create=True)
        try:
            applied = False
            self.clear(pfd, name, keep_dir=False)
            if self.privileged:
                try:
                    os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
                    applied = True
                    t = self.mtime_ns(m)  # the same tree from the same tar, every time
                    if t is not None:
                        os.utime(name, ns=(t, t), dir_fd=pfd, follow_symlinks=False)
                except OSError as e:
                    self.warnings.append(f"{m.name}: whiteout recorded, not applied: "
                                         f"{os.strerror(e.errno or 0).lower()}")
        finally:
            os.close(pfd)
        self.whiteouts.append(Whiteout("/".join([*dir_parts, name]), "file", applied))

    def finish_dirs(self) -> None:
        """Directory owner, mode and mtime, deepest first (children's creation changed mtimes)."""
        self._drop_cache()
        for parts, m in sorted(self.dirs, key=lambda d: -len(d[0])):
            try:
                fd = self.open_dir(parts, m, create=False)
            except (FileNotFoundError, ImageError):
                continue  # replaced later in the layer by a non-directory
            try:
                self.meta_fd(fd, m)
            except OSError as e:
                raise self.fail(m, describe_oserror(e)) from None
            except (ValueError, OverflowError) as e:
                raise self.fail(m, f"invalid value: {e}") from None
            finally:
                os.close(fd)
        self._drop_cache()


def apply_layer(stream: BinaryIO, dest: str | os.PathLike[str], *, compression: str = "none",
                diff_id: str | None = None, limits: Limits | None = None, privileged: bool | None = None,
                what: str = "layer") -> LayerResult:
    """Extract the layer tar read from ``stream`` into the new directory ``dest``.

    ``compression`` is "none" or "gzip".  ``diff_id`` (from the image config) is compared with
    the sha256 of the uncompressed stream.  ``stream`` is read to its end, so a
    ``source.VerifiedReader`` checks the blob's size and digest before this returns.
    ``privileged`` (default: euid 0) decides device nodes, ownership, trusted xattrs and the
    overlay form of whiteouts.  On any failure ``dest`` is removed and ImageError raised.
    """
    if compression not in ("none", "gzip"):
        raise ImageError(f"{what}: {compression}-compressed layers are not supported")
    if diff_id is not None:
        diff_id = validate_digest(diff_id, f"{what} diff_id")
    limits = limits or Limits()
    privileged = os.geteuid() == 0 if privileged is None else privileged
    dest = os.fspath(dest)
    try:
        os.mkdir(dest, 0o755)
    except OSError as e:
        raise ImageError(f"{what}: {describe_oserror(e, 'create layer directory')}") from None
    try:
        ex = _Extractor(dest, limits, privileged, what)
        try:
            return _run(ex, stream, compression, diff_id)
        finally:
            ex.close()
    except BaseException:
        remove_tree(dest)
        raise


def _run(ex: _Extractor, stream: BinaryIO, compression: str, diff_id: str | None) -> LayerResult:
    what = ex.what
    plain: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if compression == "gzip" else stream  # type: ignore[assignment]
    reader = _HashingReader(plain, ex.limits.max_bytes, what)
    try:
        # bufsize: tarfile's stream copies its whole remaining buffer on every header read, so a
        # large one costs per member; 64 KiB keeps both that and the read calls small.
        tar = tarfile.open(fileobj=reader, mode="r|", tarinfo=BoundedTarInfo,  # type: ignore[call-overload]
                           bufsize=TAR_BUFSIZE)
        try:
            while (m := tar.next()) is not None:
                tar.members.clear()  # stream mode keeps every header otherwise
                ex.member(tar, m)
            end = tar.offset
        finally:
            tar.close()
        while reader.read(CHUNK):  # the rest of the stream counts for the DiffID
            pass
        while stream.read(CHUNK):  # and of the blob, for its digest (a VerifiedReader checks it)
            pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ImageError(f"{what}: corrupt layer: {e}") from None
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(f"{what}: {describe_oserror(e, 'read layer')}") from None
    if reader.nonzero_end > end:
        raise ImageError(f"{what}: data after the end of the tar archive at offset {end} "
                         "(a member's size is wrong, or the layer is corrupt)")
    got = format_digest(reader.hash.hexdigest())
    if diff_id is not None and got != diff_id:
        raise ImageError(f"{what}: DiffID mismatch: uncompressed layer is {got}, "
                         f"the image config says {diff_id}")
    ex.finish_dirs()
    return LayerResult(got, reader.count, ex.entries, ex.whiteouts, ex.warnings)
