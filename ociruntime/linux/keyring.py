"""Session keyring of the container: a fresh, named keyring instead of the caller's.

runc joins a new session keyring named ``_ses.<container id>`` in the init (and joins the same
name on exec), then ORs a search permission into it so the container's processes can use it:
"user" search without a user namespace, "other" search with one (where the keyring's owner uid
is not mapped).  A kernel without keyrings (ENOSYS) is tolerated by runc; here the OSError is
raised and the caller decides.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ociruntime.linux.libc import SYS_KEYCTL, check, fsencode, syscall

KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEY_SPEC_SESSION_KEYRING = -3

# Permission bits from <linux/key.h>: possessor 0x3f000000, user 0x3f0000, group 0x3f00, other 0x3f.
KEY_USR_SEARCH = 0x00080000
KEY_OTH_SEARCH = 0x00000008
KEYRING_PERM_KEEP_ALL = 0xFFFFFFFF

_DESCRIBE_BUF = 1024


def session_keyring_name(container_id: str) -> str:
    """The session keyring name runc uses for a container."""
    return f"_ses.{container_id}"


def keyring_search_bits(user_namespace: bool) -> int:
    """The search bit runc adds: "other" inside a user namespace, "user" otherwise."""
    return KEY_OTH_SEARCH if user_namespace else KEY_USR_SEARCH


def join_session_keyring(name: str | None) -> int:
    """Join (creating if needed) the session keyring ``name``; None = a new anonymous one.

    Returns the keyring serial.  Raises OSError (ENOSYS when keyrings are compiled out, EACCES
    or EDQUOT when not allowed) so that the caller can choose to continue.
    """
    if name is None:
        ret = syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None)
    else:
        ret = syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, ctypes.c_char_p(fsencode(name)))
    return check(ret, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", name)


def describe_key(key: int = KEY_SPEC_SESSION_KEYRING) -> tuple[str, int, int, int, str]:
    """Return (type, uid, gid, perm, description) of a key via KEYCTL_DESCRIBE."""
    buf = ctypes.create_string_buffer(_DESCRIBE_BUF)
    ret = syscall(SYS_KEYCTL, KEYCTL_DESCRIBE, ctypes.c_long(key), buf, ctypes.c_size_t(_DESCRIBE_BUF))
    check(ret, "keyctl(KEYCTL_DESCRIBE)", str(key))
    text = buf.value.decode("utf-8", "replace")
    # Format is "type;uid;gid;perm;description"; the description itself may contain ';'.
    parts = text.split(";", 4)
    if len(parts) < 5:
        raise OSError(errno.EINVAL, f"keyctl(KEYCTL_DESCRIBE): unexpected description {text!r}", str(key))
    return parts[0], int(parts[1]), int(parts[2]), int(parts[3], 16), parts[4]


def set_keyring_perm(
    setbits: int, mask: int = KEYRING_PERM_KEEP_ALL, key: int = KEY_SPEC_SESSION_KEYRING
) -> None:
    """Set the permission of ``key`` to ``(current & mask) | setbits`` (runc's ModKeyringPerm)."""
    for what, value in (("setbits", setbits), ("mask", mask)):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"keyring permission {what} {value:#x} out of range")
    perm = (describe_key(key)[3] & mask) | setbits
    ret = syscall(SYS_KEYCTL, KEYCTL_SETPERM, ctypes.c_long(key), ctypes.c_ulong(perm))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"keyctl(KEYCTL_SETPERM {perm:#010x}): {os.strerror(err)}", str(key))
