"""The escaping of /proc/<pid>/mountinfo fields (proc(5)), shared by every mountinfo reader.

The kernel writes space, tab, newline and backslash in paths as ``\\ooo`` octal.  By hand rather
than with `re`: both readers (the cgroup layout and the rootfs code) are on create's path.
"""

from __future__ import annotations


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
