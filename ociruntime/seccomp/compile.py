"""Compile an OCI ``linux.seccomp`` profile to a classic BPF program, in the runtime (parent).

The profile is validated and planned in plain Python, then handed to libseccomp (through
pyseccomp) which builds the multi-architecture filter; the program is exported with
``seccomp_export_bpf`` and only those bytes travel to the container init, which loads them with
``ociruntime.linux.seccomp.load_filter`` (the child never calls libseccomp).

Compiling podman's default profile costs tens of milliseconds, and every ``create`` sees the same
profile, so the bytes are cached by a hash of the profile (crun does the same).  pyseccomp is
imported only on a cache miss: its import alone costs ~13 ms (it runs ``ldconfig -p`` through
``ctypes.util.find_library``).

Semantics follow runc's libcontainer/seccomp/seccomp_linux.go: unknown syscall names are warned
about and skipped, rules whose action equals the default action are skipped (libseccomp refuses
them), and a rule whose ``args`` repeat an index is split into one rule per argument (OR) instead
of one rule with all conditions (AND).  Like runc (libcontainer/seccomp/patchbpf), the program
starts with a stub returning ENOSYS for syscalls newer than the profile knows: see
``_enosys_stub``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import os
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ociruntime.errors import ConfigError, OCIError, describe_oserror, suppress
from ociruntime.linux.seccomp import (
    SECCOMP_FILTER_FLAG_LOG,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    validate_program,
)
from ociruntime.record import dataclass

Warn = Callable[[str], None]

# SECCOMP_RET_* values, exactly as libseccomp's SCMP_ACT_* macros spell them (seccomp.h); ERRNO and
# TRACE carry their 16-bit data in the low bits.
_RET_ERRNO = 0x00050000
_RET_TRACE = 0x7FF00000
_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": _RET_ERRNO,
    "SCMP_ACT_TRACE": _RET_TRACE,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_NOTIFY = _ACTIONS["SCMP_ACT_NOTIFY"]
# Default actions under which unknown syscalls already reach the kernel (or a tracer, which should
# handle ENOSYS itself): runc's isAllowAction, no ENOSYS stub for them.
_PERMISSIVE = (_ACTIONS["SCMP_ACT_ALLOW"], _ACTIONS["SCMP_ACT_LOG"], _RET_TRACE)
_ENOSYS = 38
# runc: ERRNO and TRACE without errnoRet return EPERM.
_DEFAULT_ERRNO = 1
_MAX_RET_DATA = 0xFFFF

# enum scmp_compare (seccomp.h).
_OPS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_MAX_SYSCALL_ARGS = 6
_UINT64_MAX = (1 << 64) - 1

_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}

# The runtime-spec's SeccompArch enum (defs-linux.json); pyseccomp.Arch names the same arches
# without the prefix.  Some of them are newer than this libseccomp and are skipped with a warning.
_ARCHES = frozenset(
    "SCMP_ARCH_" + a
    for a in (
        "X86 X86_64 X32 ARM AARCH64 LOONGARCH64 M68K MIPS MIPS64 MIPS64N32 MIPSEL MIPSEL64 "
        "MIPSEL64N32 PPC PPC64 PPC64LE S390 S390X SH SHEB PARISC PARISC64 RISCV64"
    ).split()
)

# seccomp_syscall_resolve_name() result for a name libseccomp does not know (__NR_SCMP_ERROR).
_NR_SCMP_ERROR = -1

# Profile keys that change the BPF bytes; flags and listener settings are applied at load time,
# so two containers differing only in those share one cache entry.
_BPF_KEYS = ("defaultAction", "defaultErrnoRet", "architectures", "syscalls")
# Version 2: programs start with the ENOSYS stub; version-1 entries have none and must not be used.
_CACHE_MAGIC = b"ociruntime-seccomp-cache 2\n"
_CACHE_MAX_BYTES = 1 << 20
# Distinct profiles a machine uses are few (an engine's default, a few custom ones): 64 entries
# of at most a few KiB each keep the cache small without evicting anything in use.
_CACHE_MAX_ENTRIES = 64


@dataclass(frozen=True)
class CompiledFilter:
    """A profile ready for ``load_filter``: the BPF bytes plus what the loader and parent need."""

    bpf: bytes
    flags: int
    notify: bool
    listener_path: str
    listener_metadata: str


Condition = tuple[int, int, int, int]  # (arg index, scmp_compare op, datum_a, datum_b)


@dataclass(frozen=True)
class _Rule:
    """One ``syscalls[]`` entry; each condition group becomes one libseccomp rule per name."""

    names: tuple[str, ...]
    action: int
    groups: tuple[tuple[Condition, ...], ...]


@dataclass(frozen=True)
class _Plan:
    default_action: int
    arches: tuple[str, ...]
    rules: tuple[_Rule, ...]
    flags: int
    notify: bool
    # Every syscall the profile names, also in rules skipped as equal to the default action:
    # they all count for the ENOSYS stub's "newest known syscall".
    names: tuple[str, ...]


class _Version(ctypes.Structure):
    """struct scmp_version (seccomp.h)."""

    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


@functools.cache
def libseccomp_version() -> str:
    """Return the loaded libseccomp's version, e.g. ``2.5.4``.

    Opened by soname (no ``find_library``) so the cached path stays cheap.
    """
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as exc:
        raise OCIError(f"seccomp: cannot load libseccomp.so.2: {exc}") from exc
    fn = lib.seccomp_version
    fn.argtypes = ()
    fn.restype = ctypes.POINTER(_Version)
    v = fn().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def compile_profile(
    seccomp: Mapping[str, Any], warn: Warn | None = None, cache_dir: str | None = None
) -> CompiledFilter:
    """Validate ``linux.seccomp`` and compile it to BPF, reusing ``cache_dir`` when given.

    Raises ConfigError for an invalid profile; unknown syscalls and unsupported architectures are
    reported through ``warn`` (also on a cache hit, the warnings are stored with the entry).
    """
    plan = _plan(seccomp)
    emit = warn if warn is not None else _ignore
    path = os.path.join(cache_dir, _cache_key(seccomp) + ".bpf") if cache_dir is not None else None
    entry = _cache_load(path) if path is not None else None
    if entry is None:
        entry = _build_bpf(plan)
        if cache_dir is not None and path is not None:
            _cache_store(cache_dir, path, entry, emit)
    bpf, warnings = entry
    for message in warnings:
        emit(message)
    return CompiledFilter(
        bpf=bpf,
        flags=plan.flags,
        notify=plan.notify,
        listener_path=_str_field(seccomp, "listenerPath"),
        listener_metadata=_str_field(seccomp, "listenerMetadata"),
    )


def _ignore(_message: str) -> None:
    """Default warning sink: the caller asked not to hear about skipped syscalls."""


# ---- planning: pure validation, no libseccomp -------------------------------------------------


def _plan(seccomp: Mapping[str, Any]) -> _Plan:
    if not isinstance(seccomp, Mapping):
        raise ConfigError("seccomp: linux.seccomp must be an object")
    default_errno = _uint_field(seccomp, "defaultErrnoRet", _MAX_RET_DATA, "seccomp: defaultErrnoRet")
    default_action = _action(seccomp.get("defaultAction"), default_errno, "seccomp: defaultAction")
    if default_action == _NOTIFY:
        # The kernel would stop the init on its very next syscall, before anyone holds the fd.
        raise ConfigError("seccomp: SCMP_ACT_NOTIFY cannot be used as the default action")
    entries = _list(seccomp, "syscalls")
    rules = tuple(_rule(entry, i, default_action) for i, entry in enumerate(entries))
    rules = tuple(r for r in rules if r is not None)
    notify = any(r.action == _NOTIFY for r in rules)
    if any(r.action == _NOTIFY and "write" in r.names for r in rules):
        # runc's rule: the init reports the listener fd to the parent with write(2); trapped,
        # that write would wait for an agent that can only get the fd through it.
        raise ConfigError("seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall")
    if notify and not _str_field(seccomp, "listenerPath"):
        raise ConfigError("seccomp: SCMP_ACT_NOTIFY requires linux.seccomp.listenerPath")
    arches = tuple(_arch(a) for a in _list(seccomp, "architectures"))
    names = tuple(name for entry in entries for name in entry["names"])
    return _Plan(default_action, arches, rules, _flags(seccomp, notify), notify, names)


def _action(name: object, errno_ret: int | None, what: str) -> int:
    if not isinstance(name, str) or name not in _ACTIONS:
        raise ConfigError(f"{what}: unknown seccomp action {name!r}")
    base = _ACTIONS[name]
    if base in (_RET_ERRNO, _RET_TRACE):
        return base | (_DEFAULT_ERRNO if errno_ret is None else errno_ret)
    return base


def _rule(entry: object, index: int, default_action: int) -> _Rule | None:
    where = f"seccomp: syscalls[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be an object")
    names = entry.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "\0" not in n for n in names):
        raise ConfigError(f"{where}: names must be a list of syscall names")
    errno_ret = _uint_field(entry, "errnoRet", _MAX_RET_DATA, f"{where}.errnoRet")
    action = _action(entry.get("action"), errno_ret, f"{where}.action")
    conditions = [_condition(a, f"{where}.args[{i}]") for i, a in enumerate(_list(entry, "args"))]
    if action == default_action:
        # libseccomp rejects a rule whose action is the filter's default (EACCES); it is a no-op.
        return None
    return _Rule(tuple(names), action, _groups(conditions))


def _groups(conditions: Sequence[Condition]) -> tuple[tuple[Condition, ...], ...]:
    """runc's rule: conditions on distinct args are ANDed in one rule; a repeated index means
    "any of these values" (libseccomp cannot AND two tests of one arg), so split into rules."""
    if not conditions:
        return ((),)
    indexes = [c[0] for c in conditions]
    if len(set(indexes)) != len(indexes):
        return tuple((c,) for c in conditions)
    return (tuple(conditions),)


def _condition(arg: object, where: str) -> Condition:
    if not isinstance(arg, Mapping):
        raise ConfigError(f"{where}: must be an object")
    index = _uint_field(arg, "index", _MAX_SYSCALL_ARGS - 1, f"{where}.index")
    value = _uint_field(arg, "value", _UINT64_MAX, f"{where}.value")
    value_two = _uint_field(arg, "valueTwo", _UINT64_MAX, f"{where}.valueTwo") or 0
    op = arg.get("op")
    if index is None or value is None or not isinstance(op, str) or op not in _OPS:
        raise ConfigError(f"{where}: needs index, value and a known op (got op {op!r})")
    # For SCMP_CMP_MASKED_EQ, value is the mask and valueTwo the expected result, which is
    # libseccomp's (datum_a, datum_b) order.
    return (index, _OPS[op], value, value_two)


def _arch(name: object) -> str:
    if not isinstance(name, str) or name not in _ARCHES:
        raise ConfigError(f"seccomp: unknown architecture {name!r}")
    return name


def _flags(seccomp: Mapping[str, Any], notify: bool) -> int:
    flags = 0
    for name in _list(seccomp, "flags"):
        if not isinstance(name, str) or name not in _FLAGS:
            raise ConfigError(f"seccomp: unsupported flag {name!r}")
        flags |= _FLAGS[name]
    if notify:
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER
        if flags & SECCOMP_FILTER_FLAG_TSYNC:
            # TSYNC and NEW_LISTENER together are EINVAL unless TSYNC_ESRCH is set (seccomp(2)).
            flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH
    else:
        # The kernel accepts WAIT_KILLABLE_RECV only with a listener (EINVAL otherwise);
        # libseccomp likewise applies it only when the filter uses SCMP_ACT_NOTIFY.
        flags &= ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    return flags


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"seccomp: {key} must be a list")
    return value


def _str_field(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"seccomp: {key} must be a string")
    return value


def _uint_field(obj: Mapping[str, Any], key: str, maximum: int, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ConfigError(f"{what}: {value!r} is not an integer between 0 and {maximum}")
    return value


# ---- building with libseccomp -------------------------------------------------------------------


def _build_bpf(plan: _Plan) -> tuple[bytes, tuple[str, ...]]:
    """Build the filter with libseccomp; return the BPF bytes and the warnings raised."""
    # Imported here, only on a cache miss: see the module docstring.
    import pyseccomp

    warnings: list[str] = []
    filt = pyseccomp.SyscallFilter(plan.default_action)
    for arch in plan.arches:
        _add_arch(pyseccomp, filt, arch, warnings)
    resolved: dict[str, int] = {}
    for rule in plan.rules:
        for name in rule.names:
            if name not in resolved:
                resolved[name] = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
                if resolved[name] == _NR_SCMP_ERROR:
                    warnings.append(f'seccomp: unknown syscall "{name}", ignored')
            if resolved[name] != _NR_SCMP_ERROR:
                _add_rule(pyseccomp, filt, rule, name, resolved[name])
    bpf = _enosys_stub(pyseccomp, plan) + _export(filt)
    validate_program(bpf)
    return bpf, tuple(warnings)


def _add_arch(pyseccomp: Any, filt: Any, name: str, warnings: list[str]) -> None:
    unsupported = f"seccomp: architecture {name} is not supported by libseccomp, ignored"
    token = getattr(pyseccomp.Arch, name.removeprefix("SCMP_ARCH_"), None)
    if token is None:
        warnings.append(unsupported)
        return
    try:
        # The native arch is always present; adding it again is EEXIST.
        if not filt.exist_arch(token):
            filt.add_arch(token)
    except OSError:
        warnings.append(unsupported)


def _add_rule(pyseccomp: Any, filt: Any, rule: _Rule, name: str, nr: int) -> None:
    for group in rule.groups:
        args = [pyseccomp.Arg(*cond) for cond in group]
        try:
            # seccomp_rule_add (not _exact) so libseccomp translates the native number to every
            # added arch and drops the rule where the syscall does not exist.
            filt.add_rule(rule.action, nr, *args)
        except OSError as exc:
            raise ConfigError(describe_oserror(exc, f"seccomp: add rule for syscall {name}")) from exc


# ---- the ENOSYS stub ------------------------------------------------------------------------------
#
# A container's libc may try a syscall newer than the profile (clone3, openat2, ...) and fall back
# to an older one only on ENOSYS; the default action's EPERM (or a kill) would break it.  runc
# therefore puts a classic-BPF prefix in front of libseccomp's program (patchbpf/enosys_linux.go),
# and so do we, with runc's rule: unless the default action lets unknown syscalls through (allow,
# log, trace), a syscall numbered above the highest one the profile names (for that
# architecture: the profile's architectures plus the native one) returns ENOSYS.  Every syscall
# the profile names is at or below that number, so its own rule still decides.  Explicit rules
# per number could not cover syscalls libseccomp itself does not know yet; a prefix covers all.
# x86_64 and x32 share one AUDIT_ARCH and differ by bit 30 of the number; on s390(x) an unknown
# syscall arrives as number 0 (the setup(2) multiplexer), which gets ENOSYS as well.

# struct seccomp_data offsets and the classic BPF opcodes the stub uses (linux/filter.h).
_SECCOMP_DATA_NR = 0
_SECCOMP_DATA_ARCH = 4
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGT_K = 0x25
_BPF_JSET_K = 0x45
_BPF_JA = 0x05
_BPF_RET_K = 0x06
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_INSN = struct.Struct("=HBBI")  # struct sock_filter, native byte order like seccomp_export_bpf

# (opcode, jump-if-true label, jump-if-false label, k); labels become relative offsets.
_Insn = tuple[int, str | None, str | None, int]


def _newest_syscalls(pyseccomp: Any, plan: _Plan) -> dict[int, dict[str, int]]:
    """AUDIT_ARCH -> {"native"/"x32": highest syscall number the profile names}."""
    tokens = {pyseccomp.system_arch()}
    for name in plan.arches:
        token = getattr(pyseccomp.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if token is not None:
            tokens.add(int(token))
    newest: dict[int, dict[str, int]] = {}
    for token in sorted(tokens):
        # Negative numbers are libseccomp's pseudo-syscalls (and -1 "unknown"): not real numbers.
        numbers = [n for n in (pyseccomp.resolve_syscall(token, s) for s in set(plan.names)) if n >= 0]
        if not numbers:
            continue
        # SCMP_ARCH_X32 is a libseccomp-only token: the kernel reports x32 as AUDIT_ARCH_X86_64.
        x32 = token == int(pyseccomp.Arch.X32)
        audit = _AUDIT_ARCH_X86_64 if x32 else token
        newest.setdefault(audit, {})["x32" if x32 else "native"] = max(numbers)
    return newest


def _enosys_stub(pyseccomp: Any, plan: _Plan) -> bytes:
    """The prefix program; empty when the default action makes it pointless."""
    base = plan.default_action & 0xFFFF0000
    if base in _PERMISSIVE or plan.default_action == _RET_ERRNO | _ENOSYS:
        return b""
    newest = _newest_syscalls(pyseccomp, plan)
    if not newest:
        return b""
    s390 = {int(getattr(pyseccomp.Arch, a)) for a in ("S390", "S390X") if hasattr(pyseccomp.Arch, a)}
    code: list[_Insn] = [(_BPF_LD_W_ABS, None, None, _SECCOMP_DATA_ARCH)]
    code += [(_BPF_JEQ_K, f"arch{audit}", None, audit) for audit in newest]
    code.append((_BPF_JA, "filter", None, 0))  # another arch: libseccomp's program decides
    labels: dict[str, int] = {}
    for audit, maxima in newest.items():
        labels[f"arch{audit}"] = len(code)
        code.append((_BPF_LD_W_ABS, None, None, _SECCOMP_DATA_NR))
        if audit in s390:
            code.append((_BPF_JEQ_K, "enosys", None, 0))
        if audit == _AUDIT_ARCH_X86_64:
            modes = {"x32": "x32" in maxima, "native": "native" in maxima}
            code.append((_BPF_JSET_K, "x32" if modes["x32"] else "filter",
                         "native" if modes["native"] else "filter", _X32_SYSCALL_BIT))
            for mode in ("native", "x32"):
                if modes[mode]:
                    labels[mode] = len(code)
                    code.append((_BPF_JGT_K, "enosys", "filter", maxima[mode]))
        else:
            code.append((_BPF_JGT_K, "enosys", "filter", maxima["native"]))
    labels["enosys"] = len(code)
    code.append((_BPF_RET_K, None, None, _RET_ERRNO | _ENOSYS))
    labels["filter"] = len(code)
    return b"".join(_assemble(i, insn, labels) for i, insn in enumerate(code))


def _assemble(index: int, insn: _Insn, labels: dict[str, int]) -> bytes:
    op, jt, jf, k = insn

    def offset(label: str | None) -> int:
        return 0 if label is None else labels[label] - index - 1

    if op == _BPF_JA:
        return _INSN.pack(op, 0, 0, offset(jt))
    # Conditional jumps have 8-bit offsets; the stub is a few instructions per architecture.
    assert offset(jt) <= 255 and offset(jf) <= 255
    return _INSN.pack(op, offset(jt), offset(jf), k)


def _export(filt: Any) -> bytes:
    """seccomp_export_bpf writes to an fd; an anonymous memfd keeps it off any filesystem."""
    with open(os.memfd_create("ociruntime-seccomp", os.MFD_CLOEXEC), "rb") as f:
        filt.export_bpf(f)
        f.seek(0)
        bpf = f.read()
    validate_program(bpf)
    return bpf


# ---- cache -----------------------------------------------------------------------------------


def _cache_key(seccomp: Mapping[str, Any]) -> str:
    relevant = {k: seccomp.get(k) for k in _BPF_KEYS}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(_CACHE_MAGIC)
    digest.update(f"{libseccomp_version()}\0{os.uname().machine}\0".encode())
    digest.update(canonical.encode())
    return digest.hexdigest()


def _cache_load(path: str) -> tuple[bytes, tuple[str, ...]] | None:
    """Return a valid cached entry, or None for a miss or anything suspicious or corrupt."""
    if not _trusted_dir(os.path.dirname(path)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        # A filter that anyone else could have written would be a sandbox bypass: trust only
        # regular files we own that nobody else can write.
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        data = f.read(_CACHE_MAX_BYTES + 1)
        entry = _decode_entry(data)
        if entry is not None:
            # The mtime is the entry's last use: pruning drops the least recently used.
            with suppress(OSError):
                os.utime(f.fileno())
    return entry


def _trusted_dir(path: str) -> bool:
    """The cache directory must be ours and writable by nobody else: a filter planted there would
    be a sandbox bypass, so the check is on the directory as well as on each entry."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _decode_entry(data: bytes) -> tuple[bytes, tuple[str, ...]] | None:
    if not data.startswith(_CACHE_MAGIC) or len(data) > _CACHE_MAX_BYTES:
        return None
    header, sep, bpf = data[len(_CACHE_MAGIC) :].partition(b"\n")
    try:
        meta = json.loads(header)
        validate_program(bpf)
    except ValueError:
        return None
    if not sep or not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(bpf).hexdigest():
        return None
    warnings = meta.get("warnings")
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return None
    return bpf, tuple(warnings)


def _encode_entry(bpf: bytes, warnings: Sequence[str]) -> bytes:
    meta = {"sha256": hashlib.sha256(bpf).hexdigest(), "warnings": list(warnings)}
    return _CACHE_MAGIC + json.dumps(meta, separators=(",", ":")).encode() + b"\n" + bpf


def _cache_store(cache_dir: str, path: str, entry: tuple[bytes, tuple[str, ...]], warn: Warn) -> None:
    """Write the entry atomically (temp file + rename, mode 0600).

    The cache only saves time, so failing to write it is reported through ``warn``, not fatal.
    """
    tmp = None
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        if not _trusted_dir(cache_dir):
            raise OSError(errno.EPERM, "not a directory owned by us and writable only by us", cache_dir)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=cache_dir)
        with open(fd, "wb") as f:
            f.write(_encode_entry(*entry))
        os.rename(tmp, path)
        tmp = None
        _prune(cache_dir, keep=os.path.basename(path))
    except OSError as exc:
        warn(describe_oserror(exc, "seccomp: cannot write cache entry"))
    finally:
        if tmp is not None:
            _unlink_quietly(tmp)


def _prune(cache_dir: str, keep: str) -> None:
    """Bound the cache: at most _CACHE_MAX_ENTRIES entries (least recently used go first), and
    no temp file older than a minute (left by a runtime killed while writing one)."""
    now = time.time()
    entries: list[tuple[float, str]] = []
    with os.scandir(cache_dir) as it:
        for e in it:
            try:
                mtime = e.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if e.name.startswith(".tmp-"):
                if now - mtime > 60:
                    _unlink_quietly(e.path)
            elif e.name.endswith(".bpf") and e.name != keep:
                entries.append((mtime, e.path))
    entries.sort(reverse=True)
    for _mtime, old in entries[_CACHE_MAX_ENTRIES - 1 :]:
        _unlink_quietly(old)


def _unlink_quietly(path: str) -> None:
    """Remove a half-written temp file; it being gone already is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return


def supported_features() -> dict[str, Any]:
    """The ``linux.seccomp`` part of the ``features`` document: only what this build can do."""
    import pyseccomp

    archs = sorted(a for a in _ARCHES if getattr(pyseccomp.Arch, a.removeprefix("SCMP_ARCH_"), None))
    return {
        "enabled": True,
        "actions": sorted(_ACTIONS),
        "operators": sorted(_OPS),
        "archs": archs,
        "knownFlags": sorted(_FLAGS),
        "supportedFlags": sorted(_FLAGS),
    }
