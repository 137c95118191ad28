"""Run the cgroup tests on a pure cgroup v2 system: a throw-away qemu guest (``make test-cgroupv2``).

Our machines have hybrid cgroups; most users have pure cgroup v2.  This harness boots Debian's
own kernel (``linux-image-amd64``'s current ABI package, fetched with ``apt-get download``, never
installed) under qemu with only cgroup2 mounted, reusing this machine's filesystem read-only over
virtio-9p with a tmpfs overlay (see README.md beside this file), and runs pytest inside as root
from the checkout this file belongs to.

Usage (as root, standard library only)::

    /usr/bin/python3 integration/v2guest/run.py [--timeout SECONDS] [--out DIR]
        [--systemd [--layout v2|hybrid]] [-- PYTEST ARGS...]

Without PYTEST ARGS it runs integration/test_cgroups_v2.py, integration/test_cgroup_commands.py,
tests/test_ebpf.py and tests/test_cgroups*.py.  The guest
inherits ``OCIRUNTIME`` (the runtime under test).  Everything derived from the kernel package
(the unpacked tree, the raw ``vmlinux``, a modules.dep, the initramfs) is cached under
``build/v2guest/`` keyed by the package's name and version.  Prints the pytest summary and a
closing ``cgroupv2: N passed, M failed, K skipped`` line; exits 0 only when pytest did.

``--systemd`` boots ``/lib/systemd/systemd`` as PID 1 instead (``make test-systemd``): pure
cgroup v2 (``--layout v2``) or systemd's hybrid layout (``--layout hybrid``), pytest run by the
unit ``v2guest-tests.service`` of the target ``v2guest.target`` that nothing else of this
machine's is part of.  Its default tests are SYSTEMD_TESTS, its result directory
``build/v2guest/out-systemd-<layout>``, its summary line ``systemd-<layout>: N passed, ...``.
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
# ---- systemd as PID 1 (--systemd) ----
# The cgroup switches of each layout as systemd 252 reads them: "hybrid" keeps the v1 controllers
# (no cgroup_no_v1) and has systemd track its units on a controller-less cgroup2 mount at
# /sys/fs/cgroup/unified (legacy_systemd_cgroup_controller=0), as on our machines (where,
# unlike under systemd, cpu and cpuacct are mounted apart).
SYSTEMD_LAYOUTS = {
    "v2": "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1",
    "hybrid": "systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=0",
}
# Start v2guest.target and what it pulls in, nothing of this machine's default.target; no unit
# status on the console; on a systemd crash reboot (qemu -no-reboot exits) instead of freezing
# until the harness timeout.  The kernel's module loader is busybox (see overlay_links), set
# with the kernel's own sysctl parameter.  v2guest_init tells init.sh to install the units and
# exec systemd.
MODPROBE = "/usr/lib/v2guest/modprobe"
SYSTEMD_OPTIONS = ("systemd.unit=v2guest.target systemd.show_status=0 systemd.crash_reboot=1 "
                   f"sysctl.kernel.modprobe={MODPROBE} v2guest_init=systemd")
SYSTEMD_TESTS = ("integration/test_systemd_guest.py", "integration/test_systemd_cgroup.py",
                 "integration/test_engines_systemd.py", "integration/test_rootless_systemd.py")
# More tests for one layout only.  Hybrid: checkpoint/restore, whose mounts differ there (v1
# hierarchies bound from a host whose mounts systemd made shared); the plain guest runs all of
# test_checkpoint.py on pure v2.  The ones that exercise mounts and terminals, to keep it short.
_CHECKPOINT = "integration/test_checkpoint.py::"
SYSTEMD_LAYOUT_TESTS = {"hybrid": (f"{_CHECKPOINT}test_checkpoint_restore_counter_continues",
                                   f"{_CHECKPOINT}test_terminal_container_restores_onto_a_new_console",
                                   f"{_CHECKPOINT}test_podman_checkpoint_restore")}
# Set in the systemd guest to its stage name (systemd-v2, systemd-hybrid): tests that need
# systemd as PID 1 skip without it.
GUEST_ENV_VAR = "OCIRUNTIME_GUEST"
# guest.py's scratch tmpfs, and its mount unit's name (systemd-escape --path --suffix=mount).
SCRATCH = "/v2guest-scratch"
SCRATCH_UNIT = "v2guest\\x2dscratch.mount"
# What guest.py gives pytest in the cgroupv2 guest (its BASE_ENV); the test unit sets the same.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "TMPDIR": SCRATCH, "LANG": "C.UTF-8", "TERM": "dumb"}
# The test unit's time limit is the harness timeout minus this, for boot and power-off: when it
# runs out systemd stops pytest and the guest still powers off with a partial pytest.log.
GUEST_MARGIN = 30
# What v2guest.target pulls in besides the test unit: the system bus and the journal.
BUS_AND_JOURNAL = ("dbus.socket", "dbus.service", "systemd-journald.socket",
                   "systemd-journald-dev-log.socket", "systemd-journald.service")
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


def kernel_cmdline(out: Path, layout: str | None = None) -> str:
    """The guest kernel's command line: guest.py as PID 1, or systemd with ``layout``'s cgroups."""
    if layout is None:
        base = KERNEL_CMDLINE
    else:
        base = f"console=ttyS0 quiet panic=-1 {SYSTEMD_LAYOUTS[layout]} {SYSTEMD_OPTIONS}"
    return f"{base} v2guest_repo={REPO} v2guest_out={out}"


def qemu_argv(kdir: Path, initramfs: Path, out: Path, layout: str | None = None) -> list[str]:
    cmdline = kernel_cmdline(out, layout)
    return [
        "qemu-system-x86_64", *accel(), "-smp", "2", "-m", "3G",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{out / 'console.log'}",
        "-kernel", str(kdir / "vmlinux"), "-initrd", str(initramfs), "-append", cmdline,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={out},mount_tag=v2out,security_model=passthrough",
    ]


def pytest_argv(extra: list[str], systemd: bool = False, layout: str = "") -> list[str]:
    if systemd:
        tests = extra or [*SYSTEMD_TESTS, *SYSTEMD_LAYOUT_TESTS.get(layout, ())]
    else:
        units = sorted(str(p.relative_to(REPO)) for p in REPO.glob("tests/test_cgroups*.py"))
        tests = extra or [*(t for t in DEFAULT_TESTS if (REPO / t).exists()), *units]
    # /v2guest-scratch is a plain tmpfs in the guest (guest.py): bundles there can hold device
    # nodes.  Not /tmp: a tmpfs there would hide a checkout living under the host's /tmp.
    return [str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp=/v2guest-scratch/pytest", *tests]


def request_env(stage: str) -> dict[str, str]:
    """The variables passed into the guest: OCIRUNTIME, and in the systemd guest its name."""
    env = {k: os.environ[k] for k in ("OCIRUNTIME",) if k in os.environ}
    if stage != "cgroupv2":
        env[GUEST_ENV_VAR] = stage
    return env


def write_request(out: Path, kdir: Path, argv: list[str], env: dict[str, str]) -> None:
    kver = one(kdir / "root" / "lib" / "modules", "*").name
    req = {"repo": str(REPO), "argv": argv, "env": env, "kver": kver,
           "modules": str(kdir / "root" / "lib" / "modules" / kver)}
    (out / "request.json").write_text(json.dumps(req, indent=1))


# ---- the systemd guest's units ----------------------------------------------------------------

def unit_word(word: str) -> str:
    """One word of an Exec*= line (systemd.service(5) "Command lines"), quoted when needed.

    ``%`` starts a specifier and ``$`` a variable, so both are doubled.
    """
    if "\n" in word:
        raise HarnessError(f"no newline possible in a unit's command line: {word!r}")
    word = word.replace("%", "%%").replace("$", "$$")
    if word and all(c.isalnum() or c in "/._-+=:,@%$" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_env(name: str, value: str) -> str:
    """An ``Environment=`` line (systemd.exec(5)) setting ``name`` to exactly ``value``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or "\n" in value:
        raise HarnessError(f"cannot pass {name}={value!r} through a unit file")
    value = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{name}={value}"'


def systemd_units(out: Path, timeout: float, env: dict[str, str]) -> dict[str, str]:
    """The unit files (and drop-ins) the systemd guest adds to /etc/systemd/system, by name.

    The target pulls in the test service, the system bus and the journal, nothing else: none of
    this machine's enabled units (its *.wants directories hang off default.target,
    sysinit.target, ...).  dbus.socket and dbus.service keep their names (systemd connects to
    the bus when a unit called dbus.service is up) but lose their default dependencies, which
    would pull in sysinit.target and with it this machine's sysinit.target.wants.
    """
    limit = max(10, int(timeout) - GUEST_MARGIN)
    guest = ["/usr/bin/python3", "-I", str(HERE / "guest.py"), "--service", str(out)]
    bus = " ".join(BUS_AND_JOURNAL)
    environment = "\n".join(unit_env(k, v) for k, v in {**BASE_ENV, **env}.items())
    no_default_deps = ("[Unit]\n# v2guest: no sysinit.target (it would start this machine's "
                       "sysinit.target.wants)\nDefaultDependencies=no\n")
    return {
        "v2guest.target": f"""\
[Unit]
Description=v2guest: the tests with systemd as PID 1
Requires=v2guest-tests.service
Wants={bus}
AllowIsolate=yes
""",
        # guest.py's scratch space: a plain tmpfs (bundles hold device nodes, which the overlay
        # root cannot), not at /tmp (it would hide a checkout living under the host's /tmp).
        SCRATCH_UNIT: f"""\
[Unit]
Description=v2guest: scratch space for the tests
DefaultDependencies=no

[Mount]
What=tmpfs
Where={SCRATCH}
Type=tmpfs
Options=mode=1777,nosuid
""",
        # Type=exec, not oneshot: a oneshot's start job stays queued until pytest ends, which
        # keeps the manager "initializing" (is-system-running) for the whole run.  The main
        # process is guest.py, which runs pytest with the output in pytest.log and writes its
        # exit code to exit, then records what systemd did; the unit's end, either way, powers off.
        "v2guest-tests.service": f"""\
[Unit]
Description=v2guest: pytest, then power off
DefaultDependencies=no
Wants={bus}
After=dbus.service
RequiresMountsFor={SCRATCH}
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
Delegate=no
WorkingDirectory={str(REPO).replace('%', '%%')}
{environment}
ExecStart={" ".join(unit_word(w) for w in guest)}
TimeoutStartSec={limit}
RuntimeMaxSec={limit}
TimeoutStopSec=10
StandardOutput=journal+console
""",
        "dbus.socket.d/v2guest.conf": no_default_deps,
        "dbus.service.d/v2guest.conf": no_default_deps,
    }


def generators(root: Path = Path("/")) -> list[str]:
    """The names of the generators systemd would run at boot (systemd.generator(7) directories).

    The guest masks them all: they only turn this machine's configuration (fstab, getty on the
    serial console, SysV scripts, postgresql clusters) into units the guest must not start, and
    cost about a second of boot.
    """
    names: set[str] = set()
    for kind in ("system-generators", "system-environment-generators"):
        for d in (f"etc/systemd/{kind}", f"usr/local/lib/systemd/{kind}", f"usr/lib/systemd/{kind}",
                  f"lib/systemd/{kind}"):
            if (root / d).is_dir():
                names.update(f"{kind}/{p.name}" for p in (root / d).iterdir())
    return sorted(names)


def overlay_links(kdir: Path, masked: list[str]) -> dict[str, str]:
    """The symbolic links the systemd guest adds to its root: {path below /: target}.

    Module autoloading as in guest.py (its setup_modules): the guest kernel's module tree (in
    our cache, seen through 9p) at /usr/lib/modules/<release>, and busybox as the kernel's
    module loader under a name that selects its modprobe applet (the kernel command line points
    kernel.modprobe at it).  A link to /dev/null in /etc masks a generator of that name.
    """
    moddir = one(kdir / "root" / "lib" / "modules", "*")
    links = {f"usr/lib/modules/{moddir.name}": str(moddir), MODPROBE.lstrip("/"): str(BUSYBOX)}
    links.update({f"etc/systemd/{name}": "/dev/null" for name in masked})
    return links


def write_overlay(out: Path, units: dict[str, str], links: dict[str, str]) -> None:
    """``out/root``: what init.sh copies onto the guest's root (the overlay's tmpfs upper layer)."""
    for name, text in units.items():
        path = out / "root" / "etc" / "systemd" / "system" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, target in links.items():
        path = out / "root" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)


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


def report(out: Path, stage: str = "cgroupv2") -> int:
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
    line = f"{stage}: {counts.get('passed', 0)} passed, {failed} failed"
    if counts.get("skipped"):
        line += f", {counts['skipped']} skipped"
    print(line)
    if rc != 0 and failed == 0:
        print(f"{stage}: pytest exited with status {rc}; full output in {out / 'pytest.log'}")
    return 1 if rc != 0 else 0


def systemd_lines(facts: dict, stage: str) -> list[str]:
    """What the systemd guest's guest.json says about the boot, as lines for the report."""
    start = facts.get("uptime_at_start")
    lines = [f"{stage}: system {facts.get('system_state', '?')}"
             + (f", pytest started {start:.1f} s after boot" if start is not None else "")
             + f"; failed units: {', '.join(facts.get('failed_units', [])) or 'none'}"]
    started = [u for u in facts.get("started_units", [])
               if u.rsplit(".", 1)[-1] in ("service", "socket", "target")]
    lines.append(f"{stage}: units started: {' '.join(started) or 'none'}")
    if facts.get("host_units_started"):
        lines.append(f"{stage}: this machine's enabled units started in the guest: "
                     f"{' '.join(facts['host_units_started'])}")
    if facts.get("facts_error"):
        lines.append(f"{stage}: recording the guest's units failed: "
                     f"{facts['facts_error'].strip().splitlines()[-1]}")
    return lines


def tail(path: Path, n: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=1200, help="wall-clock limit for the guest, seconds")
    ap.add_argument("--out", type=Path, help="result directory (emptied first); default build/v2guest/out, "
                    "with --systemd build/v2guest/out-systemd-LAYOUT")
    ap.add_argument("--systemd", action="store_true", help="boot systemd as PID 1 (its own default tests)")
    ap.add_argument("--layout", choices=sorted(SYSTEMD_LAYOUTS),
                    help="with --systemd: the cgroup layout systemd sets up (default v2)")
    ap.add_argument("pytest_args", nargs="*", help="pytest arguments (after --) instead of the default tests")
    args = ap.parse_args(argv)
    if args.layout is not None and not args.systemd:
        ap.error("--layout needs --systemd (without it the guest is always pure cgroup v2)")
    layout = (args.layout or "v2") if args.systemd else None
    stage = f"systemd-{layout}" if layout else "cgroupv2"
    sys.stdout.reconfigure(line_buffering=True)  # keep order with stderr under make
    if os.geteuid() != 0:
        print("run.py: needs root (9p passthrough of / and containers inside the guest)", file=sys.stderr)
        return 2
    if re.search(r"\s", str(REPO)):
        print(f"run.py: the checkout path {REPO} contains white space (kernel command line)", file=sys.stderr)
        return 2
    out = (args.out or CACHE / ("out" if layout is None else f"out-{stage}")).resolve()
    if re.search(r"\s", str(out)):
        print(f"run.py: the result path {out} contains white space (kernel command line)", file=sys.stderr)
        return 2
    needed = ("/lib/systemd/systemd", "/usr/bin/dbus-daemon") if layout else ()
    missing = [p for p in needed if not os.path.exists(p)]
    if missing:
        print(f"run.py: --systemd boots this machine's systemd and D-Bus: {', '.join(missing)} missing "
              "(apt-get install systemd dbus)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        kdir = resolve_kernel()
        initramfs = build_initramfs(kdir)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        env = request_env(stage)
        argv = pytest_argv(args.pytest_args, systemd=layout is not None, layout=layout or "")
        write_request(out, kdir, argv, env)
        if layout is not None:
            write_overlay(out, systemd_units(out, args.timeout, env), overlay_links(kdir, generators()))
        t1 = time.monotonic()
        run_guest(qemu_argv(kdir, initramfs, out, layout), out, args.timeout)
        print(f"{stage}: kernel {kdir.name}, prepared in {t1 - t0:.1f} s, guest ran "
              f"{time.monotonic() - t1:.1f} s; logs in {out}")
        if layout is not None and (out / "guest.json").exists():
            for line in systemd_lines(json.loads((out / "guest.json").read_text()), stage):
                print(line)
        return report(out, stage)
    except HarnessError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        console = tail(out / "console.log")
        if console:
            print(f"--- last lines of {out / 'console.log'}:\n{console}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
