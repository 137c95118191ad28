"""Execution domain of the container process (``linux.personality``), set with personality(2)."""

from __future__ import annotations

import ctypes

from ociruntime.linux.libc import LIBC, check

# Domains the spec allows (PER_LINUX, PER_LINUX32 from <linux/personality.h>).
PERSONALITIES: dict[str, int] = {"LINUX": 0x0000, "LINUX32": 0x0008}
# The spec defines no flag values yet; these are the kernel's, accepted by their macro names.
PERSONALITY_FLAGS: dict[str, int] = {
    "UNAME26": 0x0020000,
    "ADDR_NO_RANDOMIZE": 0x0040000,
    "FDPIC_FUNCPTRS": 0x0080000,
    "MMAP_PAGE_ZERO": 0x0100000,
    "ADDR_COMPAT_LAYOUT": 0x0200000,
    "READ_IMPLIES_EXEC": 0x0400000,
    "ADDR_LIMIT_32BIT": 0x0800000,
    "SHORT_INODE": 0x1000000,
    "WHOLE_SECONDS": 0x2000000,
    "STICKY_TIMEOUTS": 0x4000000,
    "ADDR_LIMIT_3GB": 0x8000000,
}
# personality(0xffffffff) only queries the current persona.
PERSONALITY_QUERY = 0xFFFFFFFF

# LIBC[...] returns a private function object, so these argtypes do not leak to other modules.
_personality = LIBC["personality"]
_personality.argtypes = [ctypes.c_ulong]
_personality.restype = ctypes.c_int


def personality_value(domain: str, flags: list[str]) -> int:
    """Combine a spec domain and flag names into the persona number; ValueError on unknown names."""
    if domain not in PERSONALITIES:
        raise ValueError(f'unknown personality domain "{domain}"')
    value = PERSONALITIES[domain]
    for flag in flags:
        if flag not in PERSONALITY_FLAGS:
            raise ValueError(f'unknown personality flag "{flag}"')
        value |= PERSONALITY_FLAGS[flag]
    return value


def get_personality() -> int:
    """Return the calling process's current persona."""
    return check(_personality(PERSONALITY_QUERY), "personality")


def set_personality(domain: str, flags: list[str]) -> None:
    """Set the execution domain; it survives execve, so the container process inherits it."""
    value = personality_value(domain, flags)
    check(_personality(value), "personality", domain)
