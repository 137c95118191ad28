"""Run the cgroup tests on a pure cgroup v2 system: a throw-away qemu guest (``make test-cgroupv2``).

Our machines have hybrid cgroups; most users have pure cgroup v2.  This harness boots Debian's
own kernel (``linux-image-amd64``'s current ABI package, fetched with ``apt-get download``, never
installed) under qemu with only cgroup2 mounted, reusing this machine's filesystem read-only over
virtio-9p with a tmpfs overlay (see README.md beside this file), and runs pytest inside as root
from the checkout this file belongs to.

Usage (as root, standard library only)::

    /usr/bin/python3 integration/v2guest/run.py [--timeout SECONDS] [--out DIR] [-- PYTEST ARGS...]

Without PYTEST ARGS it runs integration/test_cgroups_v2.py, integration/test_cgroup_commands.py,
tests/test_ebpf.py and tests/test_cgroups*.py.  The guest
inherits ``OCIRUNTIME`` (the runtime under test).  Everything derived from the kernel package
(the unpacked tree, the raw ``vmlinux``, a modules.dep, the initramfs) is cached under
``build/v2guest/`` keyed by the package's name and version.  Prints the pytest summary and a
closing ``cgroupv2: N passed, M failed, K skipped`` line; exits 0 only when pytest did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = REPO / "build" / "v2guest"
BUSYBOX = Path("/bin/busybox")
META_PACKAGE = "linux-image-amd64"
# Loaded by init.sh in this order; 9p needs netfs and fscache on 6.1.
INITRAMFS_MODULES = ("virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_ring", "virtio", "virtio_pci",
                     "9pnet", "9pnet_virtio", "netfs", "fscache", "9p", "overlay")
# Plus tests/test_cgroups*.py; test_ebpf.py attaches real device programs to a cgroup2 directory;
# test_cgroup_commands.py checks pause/resume/update/ps/events against the layout it finds.
DEFAULT_TESTS = ("integration/test_cgroups_v2.py", "integration/test_cgroup_commands.py",
                 "tests/test_ebpf.py", "integration/test_checkpoint.py")
KERNEL_CMDLINE = "console=ttyS0 quiet panic=-1 cgroup_no_v1=all"
XZ_MAGIC = b"\xfd7zXZ\x00"
SUMMARY_WORDS = ("passed", "failed", "error", "errors", "skipped", "xfailed", "xpassed", "deselected")


class HarnessError(Exception):
    """The guest could not be prepared or did not produce a result."""


# ---- the kernel -------------------------------------------------------------------------------

def _apt(args: list[str], cwd: Path | None = None) -> str:
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise HarnessError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def kernel_package() -> tuple[str, str] | None:
    """(package, version) of the kernel image ``linux-image-amd64`` depends on, or None.

    None when apt knows no such package (no package lists yet).
    """
    try:
        deps = _apt(["apt-cache", "depends", META_PACKAGE])
    except HarnessError:
        return None
    m = re.search(r"Depends: (linux-image-\d[^\s]*-amd64)\b", deps)
    if m is None:
        return None
    show = _apt(["apt-cache", "show", "--no-all-versions", m.group(1)])
    v = re.search(r"^Version: (\S+)$", show, re.MULTILINE)
    if v is None:
        raise HarnessError(f"apt-cache show {m.group(1)}: no Version field")
    return m.group(1), v.group(1)


def resolve_kernel() -> Path:
    """The cache directory for the current kernel package, downloading and unpacking it once."""
    pkg = kernel_package()
    if pkg is None:
        # A machine whose package lists were never fetched: fetch them once and ask again.
        _apt(["apt-get", "update", "-qq"])
        pkg = kernel_package()
    if pkg is None:
        raise HarnessError(f"apt knows no {META_PACKAGE}: cannot pick a guest kernel")
    name, version = pkg
    kdir = CACHE / f"{name}_{version.replace(':', '%')}"
    if not (kdir / "vmlinux").exists():
        unpack_kernel(name, kdir)
    return kdir


def unpack_kernel(package: str, kdir: Path) -> None:
    """apt-get download + dpkg -x into ``kdir/root``, then vmlinux and modules.dep; atomic."""
    kdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=kdir.parent))
    try:
        _apt(["apt-get", "download", "-q", package], cwd=tmp)
        debs = list(tmp.glob("*.deb"))
        if len(debs) != 1:
            raise HarnessError(f"apt-get download {package}: expected one .deb, found {debs}")
        _apt(["dpkg", "-x", str(debs[0]), str(tmp / "root")])
        debs[0].unlink()
        vmlinuz = one(tmp / "root" / "boot", "vmlinuz-*")
        (tmp / "vmlinux").write_bytes(extract_vmlinux(vmlinuz.read_bytes()))
        kver = one(tmp / "root" / "lib" / "modules", "*").name
        # The package ships no modules.dep and this machine may have no kmod: busybox makes one,
        # so the guest's busybox modprobe can autoload what containers ask for (veth, loop).
        _apt([str(BUSYBOX), "depmod", "-b", str(tmp / "root"), kver])
        if kdir.exists():
            shutil.rmtree(kdir)
        tmp.rename(kdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise HarnessError(f"{directory}: expected one {pattern}, found {[p.name for p in found]}")
    return found[0]


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The raw ELF kernel inside a bzImage, for qemu's PVH entry (faster than the bzImage path).

    The boot protocol header (Documentation/x86/boot.rst) gives the real-mode setup size
    (``setup_sects`` at 0x1f1) and the compressed payload's offset and length inside the
    protected-mode part (0x248, 0x24c); Debian compresses it with xz.
    """
    if bzimage[0x202:0x206] != b"HdrS":
        raise HarnessError("vmlinuz: no Linux boot protocol header")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    if not payload.startswith(XZ_MAGIC):
        raise HarnessError(f"vmlinuz: payload is not xz (starts {payload[:6].hex()})")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if not elf.startswith(b"\x7fELF"):
        raise HarnessError("vmlinuz: decompressed payload is not an ELF file")
    return elf


# ---- the initramfs ----------------------------------------------------------------------------

def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
                ino: int = 0) -> bytes:
    """One entry of a "newc" cpio archive (the initramfs format, Documentation/driver-api/early-userspace)."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08x" % f for f in fields) + encoded
    header += b"\0" * (-len(header) % 4)
    return header + data + b"\0" * (-len(data) % 4)


def build_initramfs(kdir: Path) -> Path:
    """busybox, /init, the console and null nodes and the 9p/overlay modules; cached by content.

    The archive is assembled in memory every time (a few MB, milliseconds) and written only
    when no file of the same content exists.
    """
    init = (HERE / "init.sh").read_bytes()
    busybox = BUSYBOX.read_bytes()
    kver = one(kdir / "root" / "lib" / "modules", "*").name
    moddir = kdir / "root" / "lib" / "modules" / kver
    found = {p.stem: p for p in moddir.rglob("*.ko") if p.stem in INITRAMFS_MODULES}
    missing = [m for m in INITRAMFS_MODULES if m not in found]
    if missing:
        raise HarnessError(f"{moddir}: modules missing: {missing}")
    modules = {m: found[m].read_bytes() for m in INITRAMFS_MODULES}
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        (d, stat.S_IFDIR | 0o755, b"", (0, 0))
        for d in ("bin", "dev", "proc", "sys", "lower", "upper", "newroot", "modules")
    ]
    entries += [
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox, (0, 0)),
        ("bin/sh", stat.S_IFLNK | 0o777, b"busybox", (0, 0)),  # the interpreter of /init
        ("init", stat.S_IFREG | 0o755, init, (0, 0)),
    ]
    entries += [(f"modules/{m}.ko", stat.S_IFREG | 0o644, data, (0, 0)) for m, data in modules.items()]
    archive = b"".join(
        _cpio_entry(name, mode, data, rdev, ino) for ino, (name, mode, data, rdev) in enumerate(entries, 1)
    )
    archive += _cpio_entry("TRAILER!!!", 0)
    # Named by its own content: any change to init.sh, busybox, the modules or this layout makes
    # a new file, and an unchanged one is not rewritten.
    target = kdir / f"initramfs-{hashlib.sha256(archive).hexdigest()[:16]}.cpio"
    if target.exists():
        return target
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(archive)
    tmp.rename(target)
    for old in kdir.glob("initramfs-*.cpio"):
        if old != target:
            old.unlink()
    return target


# ---- the guest --------------------------------------------------------------------------------

def accel() -> list[str]:
    """KVM only with a real hardware backend; /dev/kvm may be a paravirtual one (kvm_pvm) that
    cannot run a stock kernel, so otherwise TCG."""
    hw = any(Path("/sys/module", m).exists() for m in ("kvm_intel", "kvm_amd"))
    if hw and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def qemu_argv(kdir: Path, initramfs: Path, out: Path) -> list[str]:
    cmdline = f"{KERNEL_CMDLINE} v2guest_repo={REPO} v2guest_out={out}"
    return [
        "qemu-system-x86_64", *accel(), "-smp", "2", "-m", "3G",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{out / 'console.log'}",
        "-kernel", str(kdir / "vmlinux"), "-initrd", str(initramfs), "-append", cmdline,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={out},mount_tag=v2out,security_model=passthrough",
    ]


def pytest_argv(extra: list[str]) -> list[str]:
    units = sorted(str(p.relative_to(REPO)) for p in REPO.glob("tests/test_cgroups*.py"))
    tests = extra or [*(t for t in DEFAULT_TESTS if (REPO / t).exists()), *units]
    # /v2guest-scratch is a plain tmpfs in the guest (guest.py): bundles there can hold device
    # nodes.  Not /tmp: a tmpfs there would hide a checkout living under the host's /tmp.
    return [str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp=/v2guest-scratch/pytest", *tests]


def write_request(out: Path, kdir: Path, argv: list[str]) -> None:
    kver = one(kdir / "root" / "lib" / "modules", "*").name
    env = {k: os.environ[k] for k in ("OCIRUNTIME",) if k in os.environ}
    req = {"repo": str(REPO), "argv": argv, "env": env, "kver": kver,
           "modules": str(kdir / "root" / "lib" / "modules" / kver)}
    (out / "request.json").write_text(json.dumps(req, indent=1))


def run_guest(argv: list[str], out: Path, timeout: float) -> None:
    with open(out / "qemu.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise HarnessError(f"guest still running after {timeout:.0f} s: killed qemu") from None
    if proc.returncode != 0:
        raise HarnessError(f"qemu exited with status {proc.returncode}: see {out / 'qemu.log'}")


# ---- results ----------------------------------------------------------------------------------

def summary(log: str) -> tuple[list[str], dict[str, int]]:
    """pytest -q's closing section (short test summary and final line) and its counts."""
    lines = log.rstrip("\n").splitlines()
    start = next((i for i, line in enumerate(lines) if "short test summary info" in line), None)
    shown = lines[start:] if start is not None else lines[-1:]
    counts: dict[str, int] = {}
    if lines:
        for n, word in re.findall(r"(\d+) (\w+)", lines[-1]):
            if word in SUMMARY_WORDS:
                counts[word.rstrip("s") if word == "errors" else word] = int(n)
    return shown, counts


def report(out: Path) -> int:
    """Print the guest's pytest summary and the closing count line; the exit status to use."""
    err = out / "guest-error.txt"
    if err.exists():
        raise HarnessError(f"the guest's stage 2 failed:\n{err.read_text()}")
    if not (out / "exit").exists():
        raise HarnessError("the guest powered off without an exit code")
    rc = int((out / "exit").read_text())
    shown, counts = summary((out / "pytest.log").read_text(errors="replace"))
    for line in shown:
        print(line)
    failed = counts.get("failed", 0) + counts.get("error", 0)
    line = f"cgroupv2: {counts.get('passed', 0)} passed, {failed} failed"
    if counts.get("skipped"):
        line += f", {counts['skipped']} skipped"
    print(line)
    if rc != 0 and failed == 0:
        print(f"cgroupv2: pytest exited with status {rc}; full output in {out / 'pytest.log'}")
    return 1 if rc != 0 else 0


def tail(path: Path, n: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=1200, help="wall-clock limit for the guest, seconds")
    ap.add_argument("--out", type=Path, default=CACHE / "out", help="result directory (emptied first)")
    ap.add_argument("pytest_args", nargs="*", help="pytest arguments (after --) instead of the default tests")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep order with stderr under make
    if os.geteuid() != 0:
        print("run.py: needs root (9p passthrough of / and containers inside the guest)", file=sys.stderr)
        return 2
    if re.search(r"\s", str(REPO)):
        print(f"run.py: the checkout path {REPO} contains white space (kernel command line)", file=sys.stderr)
        return 2
    out = args.out.resolve()
    t0 = time.monotonic()
    try:
        kdir = resolve_kernel()
        initramfs = build_initramfs(kdir)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        write_request(out, kdir, pytest_argv(args.pytest_args))
        t1 = time.monotonic()
        run_guest(qemu_argv(kdir, initramfs, out), out, args.timeout)
        print(f"cgroupv2: kernel {kdir.name}, prepared in {t1 - t0:.1f} s, guest ran "
              f"{time.monotonic() - t1:.1f} s; logs in {out}")
        return report(out)
    except HarnessError as exc:
        print(f"cgroupv2: {exc}", file=sys.stderr)
        console = tail(out / "console.log")
        if console:
            print(f"--- last lines of {out / 'console.log'}:\n{console}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
