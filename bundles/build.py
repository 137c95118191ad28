"""Build a minimal OCI bundle around Debian's static busybox (for docs, demos and tests).

Usage::

    .venv/bin/python bundles/build.py DEST [--checker PATH] [--args ARG ...] [--rootless]
                                           [--terminal] [--rootfs-cache DIR]

``DEST/rootfs`` gets ``/bin/busybox`` plus one symlink per applet, the usual top-level
directories and small ``/etc`` files; ``DEST/config.json`` is ``ociruntime spec``'s default with
the given ``process.args`` and ``process.terminal``.  Tests import :func:`build_bundle` (see
bundles/README.md).  Standard library only, apart from ``ociruntime.spec.default``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

try:
    from ociruntime.errors import OCIError
    from ociruntime.spec.default import default_config
except ImportError:  # run from a checkout without the editable install: use the tree this file is in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ociruntime.errors import OCIError
    from ociruntime.spec.default import default_config

BUSYBOX = Path("/bin/busybox")
INSTALL_HINT = "apt-get install busybox-static"

# Bump when the rootfs layout below changes, so cached rootfs copies are rebuilt.
LAYOUT_VERSION = 1

PT_INTERP = 3

_DIRS: dict[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "tmp": 0o1777,
    "etc": 0o755,
    "root": 0o700,
    "run": 0o755,
    "var": 0o755,
    "var/tmp": 0o1777,
    "home": 0o755,
    "home/user": 0o755,
}

_ETC_FILES: dict[str, str] = {
    "passwd": (
        "root:x:0:0:root:/root:/bin/sh\n"
        "user:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "group": "root:x:0:\ntty:x:5:\nwheel:x:10:root\nuser:x:1000:\nnogroup:x:65534:\n",
    "hostname": "ociruntime\n",
    "resolv.conf": "",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


class BundleError(OCIError):
    """The bundle cannot be built (missing or unsuitable input, existing destination)."""


def elf_interpreter(path: Path) -> bool:
    """Whether the ELF file at ``path`` asks for a program interpreter (is dynamically linked).

    Reads the program header table (elf(5)): a PT_INTERP entry names the dynamic loader, which a
    busybox-only rootfs does not have.  Raises BundleError when the file is not ELF at all.
    """
    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise BundleError(f"{path}: not an ELF executable")
        endian = "<" if ident[5] == 1 else ">"
        if ident[4] == 2:  # ELFCLASS64: e_phoff at 32, e_phentsize/e_phnum at 54
            (phoff,) = struct.unpack_from(endian + "Q", ident, 32)
            phentsize, phnum = struct.unpack_from(endian + "HH", ident, 54)
        else:  # ELFCLASS32: e_phoff at 28, e_phentsize/e_phnum at 42
            (phoff,) = struct.unpack_from(endian + "I", ident, 28)
            phentsize, phnum = struct.unpack_from(endian + "HH", ident, 42)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            header = f.read(4)
            if len(header) < 4:
                raise BundleError(f"{path}: truncated ELF program header table")
            if struct.unpack(endian + "I", header)[0] == PT_INTERP:
                return True
    return False


def _require_static(path: Path, what: str, hint: str) -> None:
    if not path.is_file():
        raise BundleError(f"{what} {path} not found: {hint}")
    if elf_interpreter(path):
        raise BundleError(f"{what} {path} is dynamically linked, the bundle has no libc: {hint}")


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({name for name in out.split() if name and "/" not in name and name != "busybox"})


def _build_rootfs(rootfs: Path, busybox: Path) -> None:
    """Create the rootfs tree at ``rootfs`` (which must not exist)."""
    rootfs.mkdir(mode=0o755)
    for rel, mode in _DIRS.items():
        d = rootfs / rel
        d.mkdir(exist_ok=True)
        d.chmod(mode)  # explicit chmod: mkdir's mode is filtered by the umask
    if os.geteuid() == 0:
        os.chown(rootfs / "home/user", 1000, 1000)
    shutil.copy2(busybox, rootfs / "bin/busybox")
    (rootfs / "bin/busybox").chmod(0o755)
    for applet in _applets(busybox):
        # Relative target: the link must resolve inside the container, not to the host's busybox.
        (rootfs / "bin" / applet).symlink_to("busybox")
    for name, text in _ETC_FILES.items():
        (rootfs / "etc" / name).write_text(text)
        (rootfs / "etc" / name).chmod(0o644)


def _cache_key(busybox: Path) -> str:
    st = busybox.stat()
    identity = f"{LAYOUT_VERSION}:{busybox}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _cached_rootfs(cache: Path, busybox: Path) -> Path:
    """Return a complete rootfs under ``cache``, building it once.

    Built in a private temporary directory and renamed into place, so concurrent builders (parallel
    test workers) never see a half-built tree: rename(2) of a directory onto an existing non-empty
    one fails, and the loser just discards its copy.
    """
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"rootfs-{_cache_key(busybox)}"
    if final.is_dir():
        return final
    tmp = cache / f".build-{os.getpid()}-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    _build_rootfs(tmp, busybox)
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    return final


def write_config(
    dest: Path, *, args: list[str] | None = None, rootless: bool = False, terminal: bool = False
) -> Path:
    """Write ``dest/config.json`` (the default spec with these args/terminal); return its path."""
    config = default_config(rootless=rootless)
    config["process"]["args"] = list(args) if args is not None else ["sh"]
    config["process"]["terminal"] = terminal
    path = dest / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def build_bundle(
    dest: Path,
    *,
    checker: Path | None = None,
    args: list[str] | None = None,
    rootless: bool = False,
    terminal: bool = False,
    rootfs_cache: Path | None = None,
    busybox: Path = BUSYBOX,
) -> Path:
    """Create a busybox bundle at ``dest`` and return the path of its config.json.

    ``checker`` is copied to ``/bin/checker``; ``rootfs_cache`` makes repeated builds a ``cp -a``
    of a rootfs built once there (a real copy, not hard links: containers may write to it).
    """
    dest = Path(dest)
    rootfs = dest / "rootfs"
    if rootfs.exists() or rootfs.is_symlink():
        raise BundleError(f"{rootfs} already exists")
    _require_static(busybox, "busybox", INSTALL_HINT)
    if checker is not None:
        _require_static(Path(checker), "checker", "build it with gcc -static")
    dest.mkdir(parents=True, exist_ok=True)
    if rootfs_cache is None:
        _build_rootfs(rootfs, busybox)
    else:
        source = _cached_rootfs(Path(rootfs_cache), busybox)
        subprocess.run(["cp", "-a", "--", str(source), str(rootfs)], check=True)
    if checker is not None:
        shutil.copyfile(checker, rootfs / "bin/checker")
        (rootfs / "bin/checker").chmod(0o755)
    return write_config(dest, args=args, rootless=rootless, terminal=terminal)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Build a busybox-static OCI bundle.")
    p.add_argument("dest", type=Path, help="bundle directory to create (DEST/rootfs must not exist)")
    p.add_argument("--checker", type=Path, help="static checker binary to install as /bin/checker")
    # REMAINDER so container arguments may start with '-' (``--args sh -c 'echo hi'``); it must come last.
    p.add_argument("--args", nargs=argparse.REMAINDER, metavar="ARG", help="process.args (default: sh); last")
    p.add_argument("--rootless", action="store_true", help="like `runc spec --rootless`")
    p.add_argument("--terminal", action="store_true", help="set process.terminal to true")
    p.add_argument("--rootfs-cache", type=Path, help="build the rootfs once here and copy it")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = build_bundle(
            ns.dest,
            checker=ns.checker,
            args=ns.args,
            rootless=ns.rootless,
            terminal=ns.terminal,
            rootfs_cache=ns.rootfs_cache,
        )
    except (OCIError, OSError, subprocess.CalledProcessError) as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
