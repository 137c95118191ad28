"""Device access rules (``linux.resources.devices``) and their cgroup v1 writer.

runc semantics (libcontainer/specconv ``CreateCgroupConfig`` and cgroups/fs/devices.go): the
spec's rules are followed by runc's default allow list (``AllowedDevices``: mknod of any char or
block device, /dev/null, zero, full, random, urandom, tty, ptmx and the pts slaves), and the v1
writer starts from "deny everything" so that the rules, applied in order, are the whole policy.
"""

from __future__ import annotations

from typing import Any

from ociruntime.cgroups import files
from ociruntime.cgroups.common import as_list, opt_bool, opt_int, opt_str
from ociruntime.errors import ConfigError
from ociruntime.record import dataclass


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


def parse_rules(devices: Any) -> list[Rule]:
    """Validate the spec's rule list; absent type means ``a``, absent access ``rwm``."""
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
        access = opt_str(d, "access", where) or "rwm"
        if not access or any(c not in "rwm" for c in access) or len(set(access)) != len(access):
            raise ConfigError(f'{where}.access: "{access}" must be made of r, w, m')
        rules.append(Rule(allow, typ, _id(d, "major", where), _id(d, "minor", where), access))
    return rules


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
