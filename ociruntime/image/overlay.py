"""Mount a bundle's rootfs as overlayfs over the layer store, and take it down again.

``lowerdir`` lists the layers top first (overlayfs's order; the store returns them bottom
first).  mount(2) copies its option string into one page, so the whole option string must stay
under 4096 bytes: with absolute store paths (~90 bytes a layer) that is about 40 layers.  Longer
stacks go through a directory of short symlinks inside the bundle (``lower/0``, ``lower/1``, ...
pointing at the store's diff directories): the mount is made with the link directory as the
working directory and relative names, which overlayfs resolves once, at mount time (docker's
``l/`` directory does the same).  Overlayfs itself stacks at most 500 lowers.

Store and bundle paths are refused if they contain ``,`` ``:`` or ``\\``: they separate mount
options and lower layers, and escaping them is not portable across kernels.
"""

from __future__ import annotations

import errno
import os

from ociruntime.errors import ImageError
from ociruntime.linux import mount as m
from ociruntime.linux.mountinfo import parse_mountinfo

OPTIONS_MAX = 4000    # mount(2) copies one page; keep a margin below 4096
MAX_LOWERS = 500      # overlayfs's OVL_MAX_STACK
LINK_DIR = "lower"


def _check_path(path: str, what: str) -> None:
    bad = {c for c in ",:\\" if c in path}
    if bad:
        raise ImageError(f"{what} {path!r} contains {' '.join(sorted(bad))}: overlayfs cannot name it "
                         "in its mount options (choose another path, or use --copy)")


def overlay_options(lowers: list[str], upper: str, work: str) -> str:
    """The option string for ``lowers`` (top first) with absolute paths."""
    return f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"


def mount_overlay(lowers: list[str], upper: str, work: str, target: str, bundle_dir: str) -> None:
    """Mount ``target`` as the overlay of ``lowers`` (top first) with ``upper`` and ``work``.

    Raises ImageError with the kernel's reason (and the --copy hint) if the mount fails.
    """
    if not lowers:
        raise ImageError("an image without layers has nothing to mount")
    if len(lowers) > MAX_LOWERS:
        raise ImageError(f"image has {len(lowers)} layers; overlayfs stacks at most {MAX_LOWERS} "
                         "(use --copy)")
    for p in (*lowers, upper, work, target):
        _check_path(p, "path")
    data = overlay_options(lowers, upper, work)
    try:
        if len(data) <= OPTIONS_MAX:
            m.mount("overlay", target, "overlay", 0, data)
        else:
            _mount_via_links(lowers, upper, work, target, os.path.join(bundle_dir, LINK_DIR))
    except OSError as e:
        hint = ""
        if e.errno in (errno.ENODEV, errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP):
            hint = " (use --copy where overlayfs is not available)"
        raise ImageError(f"overlay mount on {target}: {os.strerror(e.errno or 0)}{hint}") from None


def _mount_via_links(lowers: list[str], upper: str, work: str, target: str, link_dir: str) -> None:
    """The long form: ``link_dir/<n>`` -> each lower, mounted with relative names from there.
    The chdir is undone before returning: the CLI is single-threaded and nothing else runs."""
    os.makedirs(link_dir, 0o700, exist_ok=True)
    n = len(lowers)
    for i, lower in enumerate(lowers):   # 0 = bottom, so names match the store's order
        os.symlink(lower, os.path.join(link_dir, str(n - 1 - i)))
    data = overlay_options([str(n - 1 - i) for i in range(n)], upper, work)
    if len(data) > OPTIONS_MAX:  # cannot happen below MAX_LOWERS, but never pass a cut string
        raise OSError(errno.E2BIG, "overlay options too long", target)
    here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(link_dir)
        m.mount("overlay", target, "overlay", 0, data)
    finally:
        os.fchdir(here)
        os.close(here)


def is_mount_point(path: str) -> bool:
    """Whether ``path`` is the mount point of a mount in our mount table."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        return any(mi.mount_point == real for mi in parse_mountinfo(f.read()))


def mounts_below(path: str) -> list[str]:
    """Mount points strictly inside ``path`` (removing a tree must never descend into one)."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo", "rb") as f:
        return sorted(mi.mount_point for mi in parse_mountinfo(f.read()) if mi.mount_point.startswith(prefix))


def unmount(target: str) -> None:
    """Unmount every mount stacked on ``target`` (normally exactly one overlay).

    Not lazily: a busy rootfs (a process still inside it) is an error the caller reports, and
    the bundle stays whole rather than losing its upper directory under a live container.
    """
    while is_mount_point(target):
        try:
            m.umount2(target, m.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno == errno.EINVAL:  # gone meanwhile
                return
            if e.errno == errno.EBUSY:
                raise ImageError(f"unmount {target}: busy (a process still uses the rootfs; "
                                 "stop the container first)") from None
            raise
