"""/proc/<pid>/mountinfo (proc(5)): its field escaping, shared by every reader, and the one
parser of its lines (the rootfs code, delete's cleanup, checkpoint).

The kernel writes space, tab, newline and backslash in paths as ``\\ooo`` octal.  By hand rather
than with `re`: the readers (the cgroup layout and the rootfs code) are on create's path.
"""

from __future__ import annotations

import os

from ociruntime.record import dataclass


def unescape(field: str) -> str:
    """``field`` with every ``\\ooo`` octal escape replaced by its character."""
    parts = field.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) >= 3 and all(c in "01234567" for c in part[:3]):
            out.append(chr(int(part[:3], 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


@dataclass(frozen=True)
class MountInfo:
    """One mountinfo line's fields."""

    mount_id: int
    parent_id: int
    dev: str  # "major:minor" of the superblock
    root: str  # the path within the superblock that is mounted
    mount_point: str
    optional: str  # "shared:N master:M ..." (space separated, possibly empty)
    fstype: str


def parse_mountinfo(data: bytes) -> list[MountInfo]:
    """Parse the text of /proc/<pid>/mountinfo."""
    out = []
    for line in data.splitlines():
        f = line.split(b" ")
        if len(f) < 10:
            continue
        sep = f.index(b"-", 6)
        # Escapes are ASCII: decode first, then unescape.
        out.append(MountInfo(mount_id=int(f[0]), parent_id=int(f[1]), dev=f[2].decode(),
                             root=unescape(os.fsdecode(f[3])), mount_point=unescape(os.fsdecode(f[4])),
                             optional=b" ".join(f[6:sep]).decode(),
                             fstype=unescape(os.fsdecode(f[sep + 1]))))
    return out
