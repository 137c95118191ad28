"""Linux capabilities: names, spec parsing, the bounding set, capset(2) and ambient caps.

Parsing (``parse_caps``/``caps_from_spec``) runs in the runtime before fork and turns the spec's
name lists into plain bitmasks; the container init then only calls ``drop_bounding``,
``keep_caps`` and ``set_caps``, which use nothing but the preloaded ``LIBC`` handle.
``last_cap()`` reads /proc, so call it once in the parent: the value is cached for the child.
"""

from __future__ import annotations

import ctypes
import errno

from ociruntime.linux.libc import SYS_CAPGET, SYS_CAPSET, check, syscall
from ociruntime.linux.prctl import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_SET_KEEPCAPS,
    prctl,
)
from ociruntime.record import dataclass

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Numbers from <linux/capability.h>, through CAP_CHECKPOINT_RESTORE (Linux 5.9).
CAP_NAMES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAP_BY_NUMBER: dict[int, str] = {v: k for k, v in CAP_NAMES.items()}

# capset(2) ABI: version 3 uses two 32-bit data words per set (64 capabilities).
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_LAST_CAP_PATH = "/proc/sys/kernel/cap_last_cap"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class CapSets:
    """The five capability sets as bitmasks (bit N = capability number N)."""

    bounding: int = 0
    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    ambient: int = 0


_last_cap: int | None = None


def _probe_last_cap() -> int:
    """Find the highest capability the kernel knows by asking PR_CAPBSET_READ (no /proc needed)."""
    cap = 0
    while cap < 63:
        try:
            prctl(PR_CAPBSET_READ, cap + 1, what="PR_CAPBSET_READ")
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
        cap += 1
    return cap


def last_cap() -> int:
    """Return the kernel's highest capability number (cached after the first call)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open(_CAP_LAST_CAP_PATH, "rb") as f:
                _last_cap = int(f.read().strip())
        except (OSError, ValueError):
            # After pivot_root /proc may be missing or hostile; the kernel itself can tell us.
            _last_cap = _probe_last_cap()
    return _last_cap


def _parse(names: list[str]) -> tuple[int, list[str]]:
    """Return (bitmask of known and available caps, unknown or unavailable names in order)."""
    top = last_cap()
    mask = 0
    skipped: list[str] = []
    for name in names:
        num = CAP_NAMES.get(name)
        if num is None or num > top:
            if name not in skipped:
                skipped.append(name)
            continue
        mask |= 1 << num
    return mask, skipped


def _warn_skipped(skipped: list[str], warn: Callable[[str], None] | None) -> None:
    # Same policy and wording as runc: a newer profile on an older kernel keeps working.
    if skipped and warn is not None:
        warn(f"ignoring unknown or unavailable capabilities: [{' '.join(skipped)}]")


def parse_caps(names: list[str], warn: Callable[[str], None] | None) -> int:
    """Turn capability names into a bitmask; unknown names or caps above last_cap warn and are skipped."""
    mask, skipped = _parse(names)
    _warn_skipped(skipped, warn)
    return mask


def caps_from_spec(spec_caps: dict | None, warn: Callable[[str], None] | None) -> CapSets:
    """Build CapSets from ``process.capabilities``; absent sets (or no object at all) are empty."""
    if not spec_caps:
        return CapSets()
    masks: dict[str, int] = {}
    skipped: list[str] = []
    for field in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        mask, bad = _parse(list(spec_caps.get(field) or []))
        masks[field] = mask
        skipped.extend(name for name in bad if name not in skipped)
    # One warning for the whole object, not one per set, like runc.
    _warn_skipped(skipped, warn)
    return CapSets(**masks)


def cap_names(mask: int) -> list[str]:
    """Names of the capabilities set in ``mask`` (numbers without a name as ``CAP_<n>``)."""
    return [CAP_BY_NUMBER.get(n, f"CAP_{n}") for n in range(64) if mask >> n & 1]


def drop_bounding(keep: int) -> None:
    """Drop every capability 0..last_cap not in ``keep`` from the bounding set.

    PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set, so this must run before
    ``set_caps`` narrows the effective set (prctl(2)).  Caps already absent are skipped, which
    lets a process without CAP_SETPCAP succeed when there is nothing left to drop.
    """
    for cap in range(last_cap() + 1):
        if keep >> cap & 1:
            continue
        name = CAP_BY_NUMBER.get(cap, f"CAP_{cap}")
        if prctl(PR_CAPBSET_READ, cap, what=f"PR_CAPBSET_READ {name}") == 0:
            continue
        prctl(PR_CAPBSET_DROP, cap, what=f"PR_CAPBSET_DROP {name}")


def keep_caps(on: bool) -> None:
    """Set PR_SET_KEEPCAPS so a setuid away from root keeps the permitted set (capabilities(7))."""
    prctl(PR_SET_KEEPCAPS, 1 if on else 0, what="PR_SET_KEEPCAPS")


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    check(syscall(SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)), "capset")


def set_caps(c: CapSets) -> None:
    """Install effective/permitted/inheritable with capset(2), then set the ambient set exactly.

    The bounding set is not touched here (see ``drop_bounding``).  An ambient capability must be
    in both permitted and inheritable or the kernel refuses to raise it; runc fails the container
    in that case, and so do we, naming the capability instead of a bare EPERM.
    """
    _capset(c.effective, c.permitted, c.inheritable)
    # Clearing first makes the result independent of what the runtime inherited (CVE-2022-29162).
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="PR_CAP_AMBIENT_CLEAR_ALL")
    for cap in range(64):
        if not c.ambient >> cap & 1:
            continue
        name = CAP_BY_NUMBER.get(cap, f"CAP_{cap}")
        if not (c.permitted >> cap & 1 and c.inheritable >> cap & 1):
            raise OSError(
                errno.EPERM,
                f"prctl(PR_CAP_AMBIENT_RAISE): ambient capability {name} is not in both "
                "the permitted and inheritable sets",
                name,
            )
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, what=f"PR_CAP_AMBIENT_RAISE {name}")


def own_caps() -> tuple[int, int]:
    """(permitted, bounding) of this process from capget(2) and PR_CAPBSET_READ: no /proc, which
    in a container's namespaces is the container's to shape."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(syscall(SYS_CAPGET, ctypes.byref(header), ctypes.byref(data)), "capget")
    permitted = data[0].permitted | data[1].permitted << 32
    bounding = 0
    for cap in range(last_cap() + 1):
        if prctl(PR_CAPBSET_READ, cap, what="PR_CAPBSET_READ") == 1:
            bounding |= 1 << cap
    return permitted, bounding


def get_caps(pid: int = 0) -> dict[str, int]:
    """Read CapInh/CapPrm/CapEff/CapBnd/CapAmb of ``pid`` (0 = self) from /proc/<pid>/status."""
    path = f"/proc/{pid or 'self'}/status"
    result: dict[str, int] = {}
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                result[key] = int(value.strip(), 16)
    if len(result) != 5:
        raise OSError(errno.EINVAL, f"capability lines missing in {path}", path)
    return result
