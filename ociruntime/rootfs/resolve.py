"""Resolve and create paths *inside* the container rootfs without ever leaving it.

The image is hostile: any component of a mount destination may be a symlink (to the host, to
/proc/self/fd/N, ...) and a second container sharing a volume may swap components while we
work (CVE-2019-18837, CVE-2021-30465, CVE-2024-45310).  So:

* ``secure_join`` computes the in-root path the way a chroot would see it (symlinks followed
  *inside* the root, ".." clamped at the root), walking component by component with
  ``O_NOFOLLOW`` opens relative to directory fds — never a joined host path string;
* missing components are created with ``mkdirat`` on the parent's fd and re-opened with
  ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``, so a swap can at worst move us elsewhere
  *inside* the root;
* the final fd's real path (``/proc/self/fd/N``) is compared with the expected one, so a swap
  that moved us is detected, and the caller mounts onto ``/proc/self/fd/N``, never onto a path.

Path verification reads the caller's /proc, so it is only used before pivot_root, where /proc is
the host's procfs; after pivot_root the kernel root *is* the container root and RESOLVE_IN_ROOT
alone keeps every lookup inside.
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.linux.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, openat2

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
# Linux's MAXSYMLINKS: the same loop limit path_resolution(7) applies.
MAX_SYMLINKS = 40


def oserror(err: int, msg: str, path: str | None) -> OSError:
    """An OSError whose text ends in the standard strerror (errors.describe_oserror relies on it)."""
    return OSError(err, f"{msg}: {os.strerror(err)}", path)


class error_context:
    """``with error_context(what, path):`` re-raises any OSError as
    ``OSError(errno, "<what>: <detail>", path)``.

    A leading ``mount: `` (the thin wrapper's call name) is dropped since ``what`` says it.
    A class, not ``@contextlib.contextmanager``: `contextlib` costs ~1.5 ms on every create.
    """

    __slots__ = ("path", "what")

    def __init__(self, what: str, path: str) -> None:
        self.what = what
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        if isinstance(e, OSError):
            detail = e.strerror or os.strerror(e.errno or 0)
            detail = detail.removeprefix("mount: ")
            raise OSError(e.errno, f"{self.what}: {detail}", self.path) from None


def fd_path(fd: int) -> str:
    """The path the kernel reports for ``fd`` (readlink of the /proc/self/fd magic link)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def open_in_root(rootfd: int, rel: str, flags: int, *, no_symlinks: bool = False, name: str = "") -> int:
    """openat2(rootfd, rel, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS [| NO_SYMLINKS])."""
    resolve = IN_ROOT | (RESOLVE_NO_SYMLINKS if no_symlinks else 0)
    return openat2(rootfd, rel or ".", flags | os.O_CLOEXEC, resolve, name=name or "/" + rel)


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def _lexical_rest(done: list[str], todo: list[str]) -> None:
    """Append the not-yet-existing remainder (``todo`` is a stack) to ``done`` lexically."""
    while todo:
        comp = todo.pop()
        if comp == "..":
            if done:
                done.pop()
        elif comp not in ("", "."):
            done.append(comp)


def secure_join(rootfd: int, path: str, *, follow: bool = True, name: str = "") -> str:
    """Resolve ``path`` inside the root ``rootfd`` and return it relative ("" for the root).

    Symlinks met on the way are read and followed *within* the root (absolute targets restart
    at the root, ".." never climbs above it), up to MAX_SYMLINKS; components that do not exist
    yet are appended lexically.  With ``follow=False`` any symlink is an error (ELOOP): proc and
    sysfs may only be mounted on real directories.  The result contains no symlink and no "..".
    """
    name = name or path
    todo = _split(path)
    todo.reverse()
    done: list[str] = []
    links = 0
    cur = open_in_root(rootfd, "", os.O_PATH | os.O_DIRECTORY, name=name)
    try:
        while todo:
            comp = todo.pop()
            if comp == "..":
                if done:
                    done.pop()
                os.close(cur)
                cur = open_in_root(rootfd, "/".join(done), os.O_PATH | os.O_DIRECTORY, name=name)
                continue
            try:
                st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
            except FileNotFoundError:
                done.append(comp)
                _lexical_rest(done, todo)
                break
            if stat.S_ISLNK(st.st_mode):
                shown = "/" + "/".join([*done, comp])
                if not follow:
                    raise oserror(errno.ELOOP, f"{shown} is a symlink", name)
                links += 1
                if links > MAX_SYMLINKS:
                    raise oserror(errno.ELOOP, f"resolve {shown}", name)
                target = os.readlink(comp, dir_fd=cur)
                if target.startswith("/"):
                    done = []
                    os.close(cur)
                    cur = open_in_root(rootfd, "", os.O_PATH | os.O_DIRECTORY, name=name)
                todo.extend(reversed(_split(target)))
                continue
            done.append(comp)
            if todo:
                if not stat.S_ISDIR(st.st_mode):
                    raise oserror(errno.ENOTDIR, "resolve /" + "/".join(done), name)
                nxt = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
                os.close(cur)
                cur = nxt
    finally:
        os.close(cur)
    return "/".join(done)


def expected_path(root_path: str, rel: str) -> str:
    """The absolute path the kernel should report for ``rel`` under a root reported as ``root_path``."""
    if not rel:
        return root_path
    return (root_path.rstrip("/") or "") + "/" + rel


def verify_fd(fd: int, root_path: str | None, rel: str, name: str) -> None:
    """Refuse ``fd`` unless it is exactly ``root_path/rel`` (a swapped component moved it)."""
    if root_path is None:
        return
    want = expected_path(root_path, rel)
    got = fd_path(fd)
    if got != want:
        raise oserror(errno.EXDEV, f"{name} moved during resolution (now {got})", name)


def mkdir_all(
    rootfd: int, rel: str, mode: int = 0o755, *, no_symlinks: bool = False, root_path: str | None = None,
    name: str = "",
) -> int:
    """Create every missing directory of the in-root path ``rel`` and return an O_PATH fd on it.

    Each missing component is made with mkdirat on its parent's fd, then the prefix is re-opened
    with openat2 IN_ROOT, so a concurrently planted symlink cannot take us out of the root.
    """
    name = name or "/" + rel
    parts = _split(rel)
    fd = open_in_root(rootfd, "", os.O_PATH | os.O_DIRECTORY, name=name)
    try:
        for i, comp in enumerate(parts):
            prefix = "/".join(parts[: i + 1])
            try:
                nxt = open_in_root(rootfd, prefix, os.O_PATH | os.O_DIRECTORY, no_symlinks=no_symlinks,
                                   name=name)
            except FileNotFoundError:
                try:
                    os.mkdir(comp, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                nxt = open_in_root(rootfd, prefix, os.O_PATH | os.O_DIRECTORY, no_symlinks=no_symlinks,
                                   name=name)
            os.close(fd)
            fd = nxt
        verify_fd(fd, root_path, rel, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def split_parent(rel: str) -> tuple[str, str]:
    """``"a/b/c"`` -> ``("a/b", "c")``; the base must be a real name."""
    parent, _, base = rel.rpartition("/")
    if base in ("", ".", ".."):
        raise oserror(errno.EINVAL, f"/{rel} does not name a file", "/" + rel)
    return parent, base


def create_file(rootfd: int, rel: str, mode: int = 0o644, *, root_path: str | None = None,
                name: str = "") -> int:
    """Make sure the in-root file ``rel`` exists (creating an empty one) and return an O_PATH fd.

    The file is created O_CREAT|O_EXCL|O_NOFOLLOW relative to its parent's fd; an existing entry
    is kept.  The returned fd is opened O_NOFOLLOW and must not be a directory or a symlink.
    """
    name = name or "/" + rel
    parent, base = split_parent(rel)
    pfd = mkdir_all(rootfd, parent, root_path=root_path, name=name)
    try:
        try:
            os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             mode, dir_fd=pfd))
        except FileExistsError:
            pass
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    finally:
        os.close(pfd)
    try:
        check_kind(fd, want_dir=False, name=name)
        verify_fd(fd, root_path, rel, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_kind(fd: int, *, want_dir: bool, name: str) -> os.stat_result:
    """Refuse a symlink, and a directory/non-directory mismatch, for a mount target fd."""
    st = os.fstat(fd)
    if stat.S_ISLNK(st.st_mode):
        raise oserror(errno.ELOOP, f"{name} is a symlink", name)
    if want_dir and not stat.S_ISDIR(st.st_mode):
        raise oserror(errno.ENOTDIR, f"{name} is not a directory", name)
    if not want_dir and stat.S_ISDIR(st.st_mode):
        raise oserror(errno.EISDIR, f"{name} is a directory", name)
    return st
