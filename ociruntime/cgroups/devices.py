"""Device access rules (``linux.resources.devices``) and their cgroup v1 writer.

runc semantics (libcontainer/specconv ``CreateCgroupConfig`` and cgroups/fs/devices.go): the
spec's rules are followed by runc's default allow list (``AllowedDevices``: mknod of any char or
block device, /dev/null, zero, full, random, urandom, tty, ptmx and the pts slaves), and the v1
writer starts from "deny everything" so that the rules, applied in order, are the whole policy.
"""

from __future__ import annotations

from ociruntime.cgroups import files
from ociruntime.cgroups.common import as_list, opt_bool, opt_int, opt_str
from ociruntime.errors import ConfigError
from ociruntime.record import dataclass

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


@dataclass(frozen=True)
class Rule:
    """One device cgroup rule; ``major``/``minor`` None mean any (``*``)."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def v1_line(self) -> str:
        """The devices.allow / devices.deny syntax: ``type major:minor access``."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def v1_lines(self) -> list[str]:
        """The lines to write for this rule.

        The v1 kernel reads any line starting with ``a`` as "all devices, all access" and ignores
        the rest, so ``a 1:3 r`` would allow (or deny) everything.  Only a full ``a *:* rwm`` means
        that; any narrower type-``a`` rule is written as its char and block halves.
        """
        if self.type != "a":
            return [self.v1_line()]
        if self.major is None and self.minor is None and set(self.access) == set("rwm"):
            return [self.v1_line()]
        return [Rule(self.allow, t, self.major, self.minor, self.access).v1_line() for t in ("c", "b")]


# runc libcontainer/specconv AllowedDevices, in runc's order.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(True, "c", None, None, "m"),
    Rule(True, "b", None, None, "m"),
    Rule(True, "c", 1, 3, "rwm"),  # /dev/null
    Rule(True, "c", 1, 8, "rwm"),  # /dev/random
    Rule(True, "c", 1, 7, "rwm"),  # /dev/full
    Rule(True, "c", 5, 0, "rwm"),  # /dev/tty
    Rule(True, "c", 1, 5, "rwm"),  # /dev/zero
    Rule(True, "c", 1, 9, "rwm"),  # /dev/urandom
    Rule(True, "c", 136, None, "rwm"),  # /dev/pts/*
    Rule(True, "c", 5, 2, "rwm"),  # /dev/ptmx
)


def _id(d: dict[str, Any], key: str, where: str) -> int | None:
    v = opt_int(d, key, where, lo=-1, hi=2**32 - 1)
    return None if v is None or v == -1 else v


def split_access(access: str) -> tuple[str, str]:
    """The r, w, m of ``access`` in that order, and its other letters.

    The schema allows any string; runc reads it as a set of r, w, m and ignores anything else
    (cgroups devices/config ``Permissions.toSet``), so repeats and unknown letters do no harm.
    """
    return "".join(c for c in "rwm" if c in access), "".join(c for c in access if c not in "rwm")


def parse_rules(devices: Any, warn: Callable[[str], None] | None = None) -> list[Rule]:
    """Validate the spec's rule list; absent type means ``a``, absent access ``rwm``.

    Unknown access letters are dropped (``warn`` hears of them); a rule left with no access
    allows or denies nothing and is skipped.
    """
    rules: list[Rule] = []
    for i, d in enumerate(as_list(devices, "linux.resources.devices")):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: must be an object")
        allow = opt_bool(d, "allow", where)
        if allow is None:
            raise ConfigError(f"{where}.allow: is required")
        typ = opt_str(d, "type", where) or "a"
        if typ not in ("a", "b", "c"):
            raise ConfigError(f'{where}.type: "{typ}" is not one of a, b, c')
        access, unknown = split_access(opt_str(d, "access", where) or "rwm")
        if unknown and warn is not None:
            warn(access_warning(f"{where}.access", unknown, access))
        if not access:
            continue
        rules.append(Rule(allow, typ, _id(d, "major", where), _id(d, "minor", where), access))
    return rules


def access_warning(where: str, unknown: str, kept: str) -> str:
    """The one warning for unknown access letters (create's config check and ``update``)."""
    effect = f'"{kept}" is used' if kept else "the rule has no effect"
    return f'{where}: unknown access "{unknown}" ignored, {effect}'


def effective_rules(devices: Any) -> list[Rule]:
    """The spec's rules followed by runc's default allow list."""
    return [*parse_rules(devices), *DEFAULT_RULES]


def allows_everything(rules: list[Rule]) -> bool:
    """Whether the rule list, applied in order from deny-all, ends up allowing every device.

    Only the last allow-all wildcard matters; anything after it narrows the policy again.
    """
    last_wild = -1
    for i, r in enumerate(rules):
        if r.type == "a" and r.major is None and r.minor is None:
            last_wild = i
    if last_wild < 0:
        return False
    wild = rules[last_wild]
    if not (wild.allow and set(wild.access) == set("rwm")):
        return False
    return all(r.allow for r in rules[last_wild + 1 :])


def apply_v1(dirpath: str, rules: list[Rule]) -> None:
    """Write the rules to a v1 devices cgroup: deny all first, then each rule in order."""
    files.write(dirpath, "devices.deny", "a")
    for rule in rules:
        for line in rule.v1_lines():
            files.write(dirpath, "devices.allow" if rule.allow else "devices.deny", line)
