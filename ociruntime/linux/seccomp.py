"""Load a compiled seccomp BPF program into the calling process with the raw seccomp(2) syscall.

This is the child side of seccomp: it runs in the forked container init, after pivot_root, so it
uses only the stdlib and the libc handle loaded before fork.  It never calls into libseccomp; the
parent compiled the profile to bytes (``ociruntime.seccomp.compile``) and the child only hands
those bytes to the kernel.
"""

from __future__ import annotations

import ctypes
import errno

from ociruntime.linux.libc import SYS_SECCOMP, check, syscall

# seccomp(2) operation and filter flags (linux/seccomp.h).
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# One struct sock_filter is {u16 code; u8 jt; u8 jf; u32 k} = 8 bytes; the kernel refuses
# programs longer than BPF_MAXINSNS (seccomp(2), EINVAL).
BPF_INSN_SIZE = 8
BPF_MAXINSNS = 4096


class _SockFprog(ctypes.Structure):
    """struct sock_fprog from linux/filter.h."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def validate_program(bpf: bytes) -> int:
    """Return the instruction count of ``bpf``; raise ValueError when it cannot be a filter."""
    if not bpf or len(bpf) % BPF_INSN_SIZE:
        raise ValueError(f"seccomp: bpf program of {len(bpf)} bytes is not a whole number of instructions")
    count = len(bpf) // BPF_INSN_SIZE
    if count > BPF_MAXINSNS:
        raise ValueError(f"seccomp: bpf program has {count} instructions, the kernel allows {BPF_MAXINSNS}")
    return count


def load_filter(bpf: bytes, flags: int) -> int:
    """Install ``bpf`` with seccomp(SECCOMP_SET_MODE_FILTER, flags); return the listener fd or 0.

    The caller must already have set no_new_privs or hold CAP_SYS_ADMIN (seccomp(2), EACCES).
    """
    count = validate_program(bpf)
    # The buffer must stay referenced until the syscall returns: the kernel copies the program.
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(count, ctypes.addressof(buf))
    ret = check(
        syscall(
            SYS_SECCOMP,
            ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
            ctypes.c_uint(flags),
            ctypes.byref(prog),
        ),
        "seccomp",
    )
    if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER:
        return ret
    if ret > 0 and flags & SECCOMP_FILTER_FLAG_TSYNC:
        # With TSYNC (and no TSYNC_ESRCH) a positive result is the id of a thread that could not
        # be synchronised, and the filter was NOT installed (seccomp(2), RETURN VALUE).
        raise OSError(errno.ESRCH, f"seccomp: thread {ret} could not be synchronized")
    return 0
