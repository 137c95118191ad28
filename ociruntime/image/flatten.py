"""Copy-mode rootfs: the overlay view of a stack of layer diffs, written out as one plain tree;
and a safe tree copy (seeding a volume from the image).

``flatten`` gives exactly what an overlay mount of the same diffs (``lowerdir=top:...:bottom``)
shows, for a filesystem where overlayfs is not available:

* layers are copied bottom first; an entry of a layer replaces a lower entry of another type
  (removed fully first), a directory over a directory merges, and the upper one's metadata
  (owner, mode, xattrs, mtime) wins, applied after its content (read-only directories).
* whiteouts, as overlayfs reads them from the diff: a 0/0 character device hides the lower entry
  of that name and is never copied; a directory with ``trusted.overlay.opaque=y`` hides the lower
  directory's content.  A whiteout the extractor could not write (``applied`` false in the
  layer's whiteouts.json, e.g. extracted unprivileged) is taken from the list instead, before the
  layer is copied.  An applied one is left to the diff: when the same layer re-created the
  name as a directory, overlayfs merges that directory with the lower one, and so do we.
* an opaque layer root (``.wh..wh..opq`` at the top of a layer) hides every lower layer.
  overlayfs ignores the opaque xattr on a layer's root, so ``visible_layers`` drops the layers
  below it: the overlay mount must stack ``visible_layers(...)`` to show the same tree.
* never copied: the whiteout devices and the ``trusted.overlay.*`` / ``user.overlay.*`` xattrs.

Safety: ``dest`` is built from untrusted content.  A lower layer may have put ``etc -> /`` there
and an upper one ``etc/passwd``; overlayfs shows the upper ``etc`` as a real directory, and our
copy must never write through the symlink.  So nothing is done by path: every directory (of the
diffs and of dest) is opened one component at a time with O_NOFOLLOW|O_DIRECTORY relative to
its parent's fd, entries are created and changed with ``dir_fd`` and no-follow calls or on
their own fds, a symlink of the source is copied as a symlink (read with readlink, never
opened), and a dest entry in the way is removed, never written into.  The same holds for
``copy_tree``.  xattrs of entries that cannot be opened (symlinks, devices) go through
``/proc/self/fd/<parent fd>/<name>``, no-follow: the parent is pinned by its fd.

Hard links: two names of one inode within one layer (or one ``copy_tree``) stay hard links.
Unprivileged, ownership is not changed and device nodes are skipped, as layers.py does; a
directory we must write into is made writable first and gets its mode back at the end.
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.errors import ImageError, suppress
from ociruntime.image.layers import OPAQUE_XATTR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TypeVar

    _L = TypeVar("_L", bound="tuple[str, Sequence[dict[str, Any]]]")

_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: an entry swapped for a fifo after its lstat must not hang the open
_FILE_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_COPY_CHUNK = 1 << 30
_READ_CHUNK = 1 << 20
# copy_file_range / sendfile refusing this pair of files: try the next way
_NO_FAST_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF})
_NOT_A_DIR = frozenset({errno.ENOTDIR, errno.ELOOP})


def visible_layers(layers: list[_L]) -> list[_L]:
    """The layers from the topmost one whose root is opaque (a whiteouts entry ``{"path": "",
    "kind": "opaque"}``) up: it hides everything below, which overlayfs does not do for a lower
    layer's root, so an overlay mount must stack only these."""
    start = 0
    for i, (_, whiteouts) in enumerate(layers):
        if any(isinstance(w, dict) and w.get("kind") == "opaque" and w.get("path") == "" for w in whiteouts):
            start = i
    return layers[start:]


def flatten(layers: list[tuple[str, list[dict]]], dest: str) -> None:
    """Copy the layers (each: its diff directory and its whiteouts list, bottom first) into the
    existing empty directory dest so that dest looks like the overlay of them."""
    try:
        dst = os.open(dest, _DIR_OPEN)
    except OSError as e:
        raise ImageError(f"flatten: destination {dest}: {_reason(e)}") from None
    try:
        try:
            if os.listdir(dst):
                raise ImageError(f"flatten: destination {dest} is not empty")
        except OSError as e:
            raise ImageError(f"flatten: destination {dest}: {_reason(e)}") from None
        shown = visible_layers(layers)
        first = len(layers) - len(shown)
        for n, (diff, whiteouts) in enumerate(shown, start=first):
            what = f"flatten layer {n + 1} of {len(layers)} ({diff})"
            try:
                src = os.open(diff, _DIR_OPEN)
            except OSError as e:
                raise ImageError(f"{what}: {_reason(e)}") from None
            try:
                copier = _Copier(what, dst, overlay=True)
                copier.whiteouts(whiteouts)
                copier.copy(src)
            finally:
                os.close(src)
    finally:
        os.close(dst)


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy the contents of the directory open as src_fd into the directory open as dst_fd
    (merging into existing dirs), keeping everything; used to seed a volume from the image.

    The source directory's own owner, mode, xattrs and mtime go to dst_fd too (a volume seeded
    from /var/lib/mysql must belong to mysql).  Nothing is treated as a whiteout here: a 0/0
    character device is copied as a device; overlayfs's xattrs are still never copied."""
    _Copier("copy tree", dst_fd, overlay=False).copy(src_fd)


def _reason(e: OSError) -> str:
    return os.strerror(e.errno).lower() if e.errno else str(e)


def _names(fd: int) -> list[str]:
    """A directory's names, reverse sorted (popped from the end: ascending order)."""
    with os.scandir(fd) as it:
        return sorted((e.name for e in it), reverse=True)


def _proc_path(parent: int, name: str) -> str:
    """A path to ``name`` in the directory open as ``parent``: resolved through the fd, so no
    symlink on the way to it is followed (use it with follow_symlinks=False)."""
    return f"/proc/self/fd/{parent}/{name}"


def _read_xattrs(target: int | str) -> list[tuple[str, bytes]]:
    """Every xattr but overlayfs's own, of an fd or (not followed) a _proc_path."""
    kw = {} if isinstance(target, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(target, **kw)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):  # no xattrs here (EPERM: some special files)
            return []
        raise
    out = []
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTRS):
            continue
        try:
            out.append((name, os.getxattr(target, name, **kw)))
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
    return out


def _copy_data(src: int, dst: int) -> None:
    """File data, in the kernel when it can (copy_file_range may reflink; sendfile), else read
    and write."""
    copied = 0
    try:
        while n := os.copy_file_range(src, dst, _COPY_CHUNK):
            copied += n
        return
    except OSError as e:
        if copied or e.errno not in _NO_FAST_COPY:
            raise
    try:
        while n := os.sendfile(dst, src, None, _COPY_CHUNK):
            copied += n
        return
    except OSError as e:
        if copied or e.errno not in _NO_FAST_COPY:
            raise
    while chunk := os.read(src, _READ_CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


class _Frame:
    """A directory being copied: both fds, its path (for messages), names left, its stat."""

    __slots__ = ("dst", "names", "parts", "src", "st")

    def __init__(self, src: int, dst: int, parts: tuple[str, ...], st: os.stat_result) -> None:
        self.src = src
        self.dst = dst
        self.parts = parts
        self.st = st
        self.names = _names(src)


class _Copier:
    """One layer (or one copy_tree) copied into the directory open as ``root``.  ``overlay``:
    read whiteouts and opaque directories as overlayfs does."""

    def __init__(self, what: str, root: int, *, overlay: bool) -> None:
        self.what = what
        self.root = root
        self.overlay = overlay
        self.privileged = os.geteuid() == 0
        # source (st_dev, st_ino) -> (dest path, dest (st_dev, st_ino)) of its first name
        self.links: dict[tuple[int, int], tuple[tuple[str, ...], tuple[int, int]]] = {}

    def fail(self, parts: tuple[str, ...] | list[str], e: OSError | str) -> ImageError:
        where = "/".join(parts) or "."
        if not where.isprintable():  # a name with a newline must not break the one-line message
            where = repr(where)
        return ImageError(f"{self.what}: {where}: {e if isinstance(e, str) else _reason(e)}")

    # -- dest, walked without following symlinks --

    def open_dest(self, parts: list[str] | tuple[str, ...]) -> int | None:
        """An fd on dest's directory ``parts``, or None when a component is missing or is not a
        directory (a symlink included): there is nothing of the lower layers there."""
        fd = os.dup(self.root)
        try:
            for comp in parts:
                try:
                    nxt = os.open(comp, _DIR_OPEN, dir_fd=fd)
                except FileNotFoundError:
                    os.close(fd)
                    return None
                except OSError as e:
                    if e.errno in _NOT_A_DIR:
                        os.close(fd)
                        return None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            raise
        return fd

    def writable(self, fd: int) -> None:
        """Unprivileged, a read-only directory of a lower layer would refuse the upper layer's
        entries: add u+rwx (its own mode comes back when its metadata is applied)."""
        if self.privileged:
            return
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o700 != 0o700:
            os.chmod(fd, mode | 0o700)

    def remove(self, parent: int, name: str) -> None:
        """Whatever is at ``name`` in dest (a directory with everything below it); missing is fine."""
        try:
            os.unlink(name, dir_fd=parent)
            return
        except FileNotFoundError:
            return
        except IsADirectoryError:
            pass
        fd = os.open(name, _DIR_OPEN, dir_fd=parent)
        try:
            self.writable(fd)
            self.clear(fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent)

    def clear(self, top: int) -> None:
        """Remove everything in the directory open as ``top`` (kept itself); no recursion
        limit, one fd per level."""
        frames: list[tuple[int, list[str], str | None]] = [(os.dup(top), _names(top), None)]
        try:
            while frames:
                fd, names, own = frames[-1]
                if names:
                    name = names.pop()
                    try:
                        os.unlink(name, dir_fd=fd)
                    except IsADirectoryError:
                        sub = os.open(name, _DIR_OPEN, dir_fd=fd)
                        try:
                            self.writable(sub)
                            frames.append((sub, _names(sub), name))
                        except BaseException:
                            os.close(sub)
                            raise
                    continue
                frames.pop()
                os.close(fd)
                if own is not None:
                    os.rmdir(own, dir_fd=frames[-1][0])
        finally:
            for fd, _, _ in frames:
                with suppress(OSError):
                    os.close(fd)

    # -- whiteouts recorded but not in the diff --

    def whiteouts(self, whiteouts: list[dict[str, Any]]) -> None:
        """Apply the whiteouts the extractor could not write into the diff, before the layer's
        own entries are copied.  Opaque directories are always taken from the list too: the
        trusted.overlay xattr is not readable unprivileged (and the list agrees with it)."""
        for w in whiteouts:
            path, kind = w.get("path"), w.get("kind")
            if not isinstance(path, str) or kind not in ("file", "opaque"):
                raise ImageError(f"{self.what}: invalid whiteout record {w!r}")
            parts = path.split("/") if path else []
            if path.startswith("/") or "\0" in path or any(p in ("", ".", "..") for p in parts):
                raise ImageError(f"{self.what}: invalid whiteout path {path!r}")
            if kind == "file" and (w.get("applied") or not parts):
                continue  # the 0/0 device in the diff does it, as overlayfs reads it
            if kind == "opaque" and not parts:
                continue  # an opaque root: visible_layers left out the layers below
            try:
                if kind == "file":
                    fd = self.open_dest(parts[:-1])
                    if fd is not None:
                        try:
                            self.writable(fd)
                            self.remove(fd, parts[-1])
                        finally:
                            os.close(fd)
                else:
                    fd = self.open_dest(parts)
                    if fd is not None:
                        try:
                            self.writable(fd)
                            self.clear(fd)
                        finally:
                            os.close(fd)
            except OSError as e:
                raise self.fail(parts, e) from None

    # -- the copy --

    def copy(self, src_root: int) -> None:
        """Merge the directory open as ``src_root`` into dest's root."""
        frames: list[_Frame] = []
        try:
            src = os.dup(src_root)
            try:
                dst = os.dup(self.root)
            except BaseException:
                os.close(src)
                raise
            try:
                frames.append(_Frame(src, dst, (), os.fstat(src)))
            except BaseException:
                os.close(src)
                os.close(dst)
                raise
            self.writable(dst)
            while frames:
                f = frames[-1]
                if f.names:
                    name = f.names.pop()
                    parts = (*f.parts, name)
                    try:
                        child = self.entry(f, name, parts)
                    except OSError as e:
                        raise self.fail(parts, e) from None
                    if child is not None:
                        frames.append(child)
                    continue
                try:
                    self.meta_fd(f.dst, f.st, _read_xattrs(f.src), merged=True)
                except OSError as e:
                    raise self.fail(f.parts, e) from None
                frames.pop()
                os.close(f.src)
                os.close(f.dst)
        except OSError as e:
            raise self.fail((), e) from None
        finally:
            for f in frames:
                with suppress(OSError):
                    os.close(f.src)
                with suppress(OSError):
                    os.close(f.dst)

    def entry(self, f: _Frame, name: str, parts: tuple[str, ...]) -> _Frame | None:
        st = os.stat(name, dir_fd=f.src, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return self.directory(f, name, parts)
        # a non-directory replaces whatever a lower layer (or the target of copy_tree) has there
        self.remove(f.dst, name)
        if self.overlay and stat.S_ISCHR(mode) and st.st_rdev == 0:
            return None  # a whiteout: the lower entry is gone, the device itself is not copied
        if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and not self.privileged:
            return None  # as layers.py: no device nodes unprivileged
        if st.st_nlink > 1 and self.link(f, name, st):
            return None
        if stat.S_ISREG(mode):
            self.regular(f, name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=f.src), name, dir_fd=f.dst)
            self.meta_at(f, name, st)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=f.dst)
            self.meta_at(f, name, st)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=f.dst)
            self.meta_at(f, name, st)
        else:
            raise OSError(errno.EINVAL, f"unsupported file type {stat.S_IFMT(mode):o}")
        if st.st_nlink > 1:
            made = os.stat(name, dir_fd=f.dst, follow_symlinks=False)
            self.links[(st.st_dev, st.st_ino)] = (parts, (made.st_dev, made.st_ino))
        return None

    def directory(self, f: _Frame, name: str, parts: tuple[str, ...]) -> _Frame:
        existed = False
        try:
            old = os.stat(name, dir_fd=f.dst, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(old.st_mode):
                existed = True
            else:
                os.unlink(name, dir_fd=f.dst)  # a file or symlink below a directory: replaced
        if not existed:
            os.mkdir(name, 0o700, dir_fd=f.dst)  # its own mode at the end, once it is filled
        src = os.open(name, _DIR_OPEN, dir_fd=f.src)
        try:
            dst = os.open(name, _DIR_OPEN, dir_fd=f.dst)
        except BaseException:
            os.close(src)
            raise
        try:
            if existed:
                self.writable(dst)
                if self.overlay and self.opaque(src):
                    self.clear(dst)
            return _Frame(src, dst, parts, os.fstat(src))
        except BaseException:
            os.close(src)
            os.close(dst)
            raise

    def opaque(self, fd: int) -> bool:
        try:
            return os.getxattr(fd, OPAQUE_XATTR) == b"y"
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                return False
            raise

    def link(self, f: _Frame, name: str, st: os.stat_result) -> bool:
        """A later name of an inode already copied: hard-link it to the first copy (when that
        is still the file we made).  False: copy it instead."""
        first = self.links.get((st.st_dev, st.st_ino))
        if first is None:
            return False
        parts, made = first
        pfd = self.open_dest(parts[:-1])
        if pfd is None:
            return False
        try:
            try:
                cur = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if (cur.st_dev, cur.st_ino) != made:
                return False
            os.link(parts[-1], name, src_dir_fd=pfd, dst_dir_fd=f.dst, follow_symlinks=False)
            return True
        finally:
            os.close(pfd)

    def regular(self, f: _Frame, name: str) -> None:
        src = os.open(name, _FILE_READ, dir_fd=f.src)
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "changed type while being copied")
            dst = os.open(name, _FILE_CREATE, 0o600, dir_fd=f.dst)
            try:
                _copy_data(src, dst)
                self.meta_fd(dst, st, _read_xattrs(src), merged=False)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    # -- metadata: owner, xattrs, mode, times (chown clears setuid bits and capabilities) --

    def set_xattrs(self, target: int | str, xattrs: list[tuple[str, bytes]]) -> None:
        kw = {} if isinstance(target, int) else {"follow_symlinks": False}
        for name, value in xattrs:
            try:
                os.setxattr(target, name, value, **kw)
            except OSError as e:
                if self.privileged or e.errno not in (errno.EPERM, errno.EACCES):
                    raise OSError(e.errno, f"set xattr {name}: {e.strerror}") from None

    def meta_fd(self, fd: int, st: os.stat_result, xattrs: list[tuple[str, bytes]], *, merged: bool) -> None:
        """On an open regular file or directory.  ``merged``: a directory that may hold a lower
        layer's (or the target's) xattrs, which the upper one's replace."""
        if self.privileged:
            os.chown(fd, st.st_uid, st.st_gid)
        if merged:
            keep = {n for n, _ in xattrs}
            for name, _ in _read_xattrs(fd):
                if name not in keep:
                    try:
                        os.removexattr(fd, name)
                    except OSError as e:
                        if self.privileged or e.errno not in (errno.EPERM, errno.EACCES):
                            raise
        self.set_xattrs(fd, xattrs)
        os.chmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def meta_at(self, f: _Frame, name: str, st: os.stat_result) -> None:
        """On a symlink, device, fifo or socket we just made (never opened), by no-follow calls."""
        if self.privileged:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=f.dst, follow_symlinks=False)
        xattrs = _read_xattrs(_proc_path(f.src, name))
        if xattrs:
            self.set_xattrs(_proc_path(f.dst, name), xattrs)
        if not stat.S_ISLNK(st.st_mode):
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=f.dst)
            try:
                if stat.S_ISLNK(os.fstat(fd).st_mode):
                    raise OSError(errno.ELOOP, "replaced by a symlink while being created")
                os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode))
            finally:
                os.close(fd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=f.dst, follow_symlinks=False)

