"""Thin wrappers around bpf(2) for cgroup programs, plus the eBPF instruction encoding.

Only what a container runtime needs to install a cgroup v2 device filter: load a program,
attach it to / detach it from a cgroup directory, list the programs attached there, and turn an
attached program's id back into an fd (detaching a BPF_F_ALLOW_MULTI program needs its fd).
Each wrapper fills the matching member of ``union bpf_attr`` (linux/bpf.h) and passes only the
bytes it knows: the kernel zero-fills the rest of the union (bpf(2), "size" argument).
Failures raise ``OSError(errno, "bpf <COMMAND>: strerror")``; a program the verifier refuses
raises :class:`VerifierError`, which carries the verifier's log.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from ociruntime.linux.libc import SYS_BPF, check, syscall
from ociruntime.record import dataclass

# bpf(2) commands (enum bpf_cmd).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

# Program and attach types, attach flags (enum bpf_prog_type, enum bpf_attach_type).
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx.access_type: device type in the low 16 bits, access in the high 16.
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4

# Instruction classes, operations and operand sources (linux/bpf_common.h, linux/bpf.h).
BPF_LDX = 0x01
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_W = 0x00
BPF_MEM = 0x60
BPF_K = 0x00
BPF_X = 0x08
BPF_AND = 0x50
BPF_RSH = 0x70
BPF_MOV = 0xB0
BPF_JEQ = 0x10
BPF_JNE = 0x50
BPF_EXIT = 0x90

INSN_SIZE = 8
OBJ_NAME_LEN = 16
# Verifier log buffer for the retry after a refused load.  Level 1 logs every instruction the
# verifier walks; a device filter of a few hundred rules stays far below this.
_LOG_SIZE = 256 * 1024
_LOG_LEVEL = 1
# First guess for BPF_PROG_QUERY; the kernel answers ENOSPC with the real count when it is short.
_QUERY_SLOTS = 16


@dataclass(frozen=True)
class Insn:
    """One ``struct bpf_insn``: opcode, 4-bit dst/src registers, s16 offset, s32 immediate."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def pack(self) -> bytes:
        """The 8 little-endian bytes the kernel reads; dst is the low nibble of byte 1."""
        if not (0 <= self.dst <= 10 and 0 <= self.src <= 10):
            raise ValueError(f"bpf insn: bad register in {self}")
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def assemble(insns: list[Insn]) -> bytes:
    """The program text for BPF_PROG_LOAD."""
    return b"".join(i.pack() for i in insns)


class VerifierError(OSError):
    """BPF_PROG_LOAD failed; ``log`` is the verifier's full message (may be empty)."""

    def __init__(self, err: int, log: str) -> None:
        self.log = log
        # The reason sits at the end of the log; keep the message one line and bounded.
        summary = "; ".join(line.strip() for line in log.strip().splitlines() if line.strip())[-1500:]
        detail = f" (verifier: {summary})" if summary else ""
        super().__init__(err, f"bpf BPF_PROG_LOAD{detail}: {os.strerror(err)}")


class _ProgLoadAttr(ctypes.Structure):
    """The BPF_PROG_LOAD member of ``union bpf_attr``, up to ``expected_attach_type``."""

    _fields_ = (
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * OBJ_NAME_LEN),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    )


class _AttachAttr(ctypes.Structure):
    """The BPF_PROG_ATTACH / BPF_PROG_DETACH member, up to ``replace_bpf_fd``."""

    _fields_ = (
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("replace_bpf_fd", ctypes.c_uint32),
    )


class _QueryAttr(ctypes.Structure):
    """The BPF_PROG_QUERY member, up to ``prog_cnt`` and its padding."""

    _fields_ = (
        ("target_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("prog_cnt", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    )


class _GetIdAttr(ctypes.Structure):
    """The BPF_*_GET_FD_BY_ID member."""

    _fields_ = (
        ("prog_id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    )


class _InfoAttr(ctypes.Structure):
    """The BPF_OBJ_GET_INFO_BY_FD member."""

    _fields_ = (
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    )


class _ProgInfoHead(ctypes.Structure):
    """The first two fields of ``struct bpf_prog_info``; the kernel fills only ``info_len`` bytes."""

    _fields_ = (("type", ctypes.c_uint32), ("id", ctypes.c_uint32))


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    return syscall(SYS_BPF, ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))


def prog_load(prog_type: int, insns: bytes, license: str, name: str = "") -> int:
    """Load a program; return its fd (O_CLOEXEC, as every bpf fd).

    The first attempt runs without a log (cheaper, and a level-1 log that overflows its buffer
    would itself fail the load); only a refused program is loaded again with a log buffer so
    that the error can say why.
    """
    if not insns or len(insns) % INSN_SIZE:
        raise ValueError(f"bpf program of {len(insns)} bytes is not a whole number of instructions")
    text = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // INSN_SIZE,
        insns=ctypes.addressof(text),
        license=ctypes.addressof(lic),
        prog_name=name.encode()[: OBJ_NAME_LEN - 1],
    )
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr.log_level, attr.log_size, attr.log_buf = _LOG_LEVEL, _LOG_SIZE, ctypes.addressof(log)
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        # Loaded on the second try (a transient failure such as EAGAIN): use it.
        return fd
    raise VerifierError(err, log.value.decode(errors="replace"))


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach a loaded program to the cgroup directory ``target_fd``."""
    attr = _AttachAttr(
        target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type, attach_flags=flags
    )
    check(_bpf(BPF_PROG_ATTACH, attr), "bpf BPF_PROG_ATTACH")


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    """Detach ``prog_fd`` from the cgroup directory ``target_fd`` (ENOENT: it is not attached)."""
    attr = _AttachAttr(target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type)
    check(_bpf(BPF_PROG_DETACH, attr), "bpf BPF_PROG_DETACH")


def prog_query(target_fd: int, attach_type: int) -> list[int]:
    """Ids of the programs attached directly to ``target_fd`` (not inherited ones), in run order."""
    slots = _QUERY_SLOTS
    while True:
        ids = (ctypes.c_uint32 * slots)()
        attr = _QueryAttr(
            target_fd=target_fd, attach_type=attach_type, prog_ids=ctypes.addressof(ids), prog_cnt=slots
        )
        if _bpf(BPF_PROG_QUERY, attr) == 0:
            return list(ids[: attr.prog_cnt])
        err = ctypes.get_errno()
        # ENOSPC: more programs than slots; prog_cnt now holds how many there are.
        if err == errno.ENOSPC and attr.prog_cnt > slots:
            slots = attr.prog_cnt
            continue
        raise OSError(err, f"bpf BPF_PROG_QUERY: {os.strerror(err)}")


def prog_get_fd_by_id(prog_id: int) -> int:
    """An fd for the loaded program with this id (ENOENT once it has been freed)."""
    attr = _GetIdAttr(prog_id=prog_id)
    return check(_bpf(BPF_PROG_GET_FD_BY_ID, attr), "bpf BPF_PROG_GET_FD_BY_ID", str(prog_id))


def prog_id(prog_fd: int) -> int:
    """The kernel-wide id of the program behind ``prog_fd`` (what BPF_PROG_QUERY reports)."""
    info = _ProgInfoHead()
    attr = _InfoAttr(bpf_fd=prog_fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    check(_bpf(BPF_OBJ_GET_INFO_BY_FD, attr), "bpf BPF_OBJ_GET_INFO_BY_FD")
    return info.id
