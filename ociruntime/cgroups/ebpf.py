"""Device access control on cgroup v2: the device rules compiled to a BPF_CGROUP_DEVICE program.

cgroup v2 has no devices controller; the kernel instead runs every BPF_PROG_TYPE_CGROUP_DEVICE
program attached to the cgroup and its ancestors on each device open and mknod, and the access
is refused unless all of them return 1 (Documentation/admin-guide/cgroup-v2.rst, "Device
controller").  The program is the one runc and crun generate (runc
libcontainer/cgroups/devices/devicefilter.go):

* a prologue loads ``struct bpf_cgroup_dev_ctx`` into registers: R2 = device type (low 16 bits
  of ``access_type``), R3 = requested access (high 16 bits), R4 = major, R5 = minor;
* one block per rule, emitted from the LAST rule to the first, so the first block that decides
  returns and the last matching rule of the list wins, as the v1 writer's ordered
  devices.allow/devices.deny writes do;
* a final verdict for requests no rule decided: the action of the last "a *:* rwm" rule, or
  deny when there is none (the v1 writer starts with ``devices.deny a``).

One refinement over "first match returns": a request can carry several access bits at once
(open O_RDWR asks for read and write in one call), and a rule may name only some of them.  The
winner is decided per bit: R3 keeps the bits no rule has decided yet; a deny rule that names any
of them refuses the request, an allow rule clears the ones it names and returns 1 once none are
left.  A plain "first rule whose access contains the request" test would let ``deny c 1:3 w``
after ``allow c 1:3 rwm`` pass an O_RDWR open.

Nothing is needed at teardown: the programs attached to a cgroup are released with it when
the directory is removed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from ociruntime import record
from ociruntime.cgroups.devices import Rule
from ociruntime.errors import OCIError, describe_oserror
from ociruntime.linux import bpf
from ociruntime.linux.bpf import Insn

# License string as the kernel's MODULE_LICENSE spells it; CGROUP_DEVICE programs call no
# GPL-only helpers, so any string is accepted (runc uses the same).
LICENSE = "Apache"
# Shown by `bpftool cgroup tree`; the kernel allows [A-Za-z0-9_.] and 15 characters.
PROG_NAME = "oci_devices"

R0, R1, R2, R3, R4, R5 = range(6)
_TYPES = {"c": bpf.BPF_DEVCG_DEV_CHAR, "b": bpf.BPF_DEVCG_DEV_BLOCK}
_ACCESS = {"r": bpf.BPF_DEVCG_ACC_READ, "w": bpf.BPF_DEVCG_ACC_WRITE, "m": bpf.BPF_DEVCG_ACC_MKNOD}
_ALL_ACCESS = bpf.BPF_DEVCG_ACC_READ | bpf.BPF_DEVCG_ACC_WRITE | bpf.BPF_DEVCG_ACC_MKNOD
# Jump immediates are s32 compared against the zero-extended u32 major/minor, so a larger rule
# number could never be encoded as an equality test.  No device has one: the kernel's numbers
# are 12-bit majors and 20-bit minors (MINORBITS, linux/kdev_t.h), so such a rule matches nothing.
_IMM_MAX = 2**31 - 1
# Placeholder offset for "leave this block"; patched once the block's length is known.
_TO_NEXT = -(2**15)


# --- the instructions used ---------------------------------------------------------------------
def _ldx_w(dst: int, src: int, off: int) -> Insn:
    return Insn(bpf.BPF_LDX | bpf.BPF_MEM | bpf.BPF_W, dst, src, off, 0)


def _alu32_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(bpf.BPF_ALU | op | bpf.BPF_K, dst, 0, 0, imm)


def _mov32_reg(dst: int, src: int) -> Insn:
    return Insn(bpf.BPF_ALU | bpf.BPF_MOV | bpf.BPF_X, dst, src, 0, 0)


def _jmp_imm(op: int, dst: int, imm: int, off: int = _TO_NEXT) -> Insn:
    return Insn(bpf.BPF_JMP | op | bpf.BPF_K, dst, 0, off, imm)


def _exit() -> Insn:
    return Insn(bpf.BPF_JMP | bpf.BPF_EXIT)


def _verdict(allow: bool) -> list[Insn]:
    return [_alu32_imm(bpf.BPF_MOV, R0, int(allow)), _exit()]


# --- the program --------------------------------------------------------------------------------
def _prologue() -> list[Insn]:
    # struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; } (linux/bpf.h).
    # 32-bit ALU ops zero-extend, so R2/R3 hold exactly the 16-bit halves.
    return [
        _ldx_w(R2, R1, 0),
        _alu32_imm(bpf.BPF_AND, R2, 0xFFFF),
        _ldx_w(R3, R1, 0),
        _alu32_imm(bpf.BPF_RSH, R3, 16),
        _ldx_w(R4, R1, 4),
        _ldx_w(R5, R1, 8),
    ]


def access_mask(access: str) -> int:
    """BPF_DEVCG_ACC_* bits for an ``rwm`` string."""
    mask = 0
    for c in access:
        mask |= _ACCESS[c]
    return mask


def _is_wildcard(rule: Rule) -> bool:
    """A rule that matches every request: its block would end the program unconditionally."""
    any_device = rule.type == "a" and rule.major is None and rule.minor is None
    return any_device and access_mask(rule.access) == _ALL_ACCESS


def _can_match(rule: Rule) -> bool:
    return all(n is None or n <= _IMM_MAX for n in (rule.major, rule.minor))


def _rule_block(rule: Rule) -> list[Insn]:
    """The instructions for one rule; every conditional jump leaves for the next block."""
    block: list[Insn] = []
    if rule.type != "a":
        block.append(_jmp_imm(bpf.BPF_JNE, R2, _TYPES[rule.type]))
    if rule.major is not None:
        block.append(_jmp_imm(bpf.BPF_JNE, R4, rule.major))
    if rule.minor is not None:
        block.append(_jmp_imm(bpf.BPF_JNE, R5, rule.minor))
    mask = access_mask(rule.access)
    if mask != _ALL_ACCESS:
        # Skip the rule unless it names one of the still undecided bits (R1 is free: the
        # context was read in the prologue).
        block += [
            _mov32_reg(R1, R3),
            _alu32_imm(bpf.BPF_AND, R1, mask),
            _jmp_imm(bpf.BPF_JEQ, R1, 0),
        ]
        if rule.allow:
            # These bits are allowed; the rest is left to earlier rules.
            block += [_alu32_imm(bpf.BPF_AND, R3, ~mask), _jmp_imm(bpf.BPF_JNE, R3, 0)]
    block += _verdict(rule.allow)
    return [
        record.replace(insn, off=len(block) - i - 1) if insn.off == _TO_NEXT else insn
        for i, insn in enumerate(block)
    ]


def effective(rules: Sequence[Rule]) -> tuple[bool, list[Rule]]:
    """The verdict for undecided requests and the rules that can change it, in list order.

    A full wildcard decides everything, so the rules before the last one are dead (and the
    verifier refuses unreachable instructions).  The earliest remaining rules whose action is
    the default's would only say what falling through says.
    """
    default, start = False, 0
    for i, rule in enumerate(rules):
        if _is_wildcard(rule):
            default, start = rule.allow, i + 1
    live = [r for r in rules[start:] if _can_match(r)]
    while live and live[0].allow == default:
        live.pop(0)
    return default, live


def compile_rules(rules: Sequence[Rule]) -> list[Insn]:
    """The device filter for ``rules`` (the spec's rules followed by the defaults), last match wins."""
    default, live = effective(rules)
    insns = _prologue()
    for rule in reversed(live):
        insns += _rule_block(rule)
    return insns + _verdict(default)


# --- installing it --------------------------------------------------------------------------------
def _detach_id(cgroup_fd: int, prog_id: int) -> None:
    try:
        prog_fd = bpf.prog_get_fd_by_id(prog_id)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return  # detached and freed meanwhile
        raise
    try:
        bpf.prog_detach(cgroup_fd, prog_fd, bpf.BPF_CGROUP_DEVICE)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    finally:
        os.close(prog_fd)


def install(dirpath: str, rules: Sequence[Rule]) -> int | None:
    """Make ``rules`` the device policy of the cgroup v2 directory ``dirpath``.

    Returns the id of the attached program, or None when the rules allow everything (then no
    program is needed).  Programs attached before (an update) are detached only after the new
    one is in place, as runc does: while both run, a request must pass both, so the switch
    never lets through anything either policy refuses.
    """
    default, live = effective(rules)
    text = None if default and not live else bpf.assemble(compile_rules(rules))
    try:
        cgroup_fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError(f"device filter: {describe_oserror(exc, 'open')}") from None
    try:
        old = bpf.prog_query(cgroup_fd, bpf.BPF_CGROUP_DEVICE)
        new_id = None
        if text is not None:
            prog_fd = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, text, LICENSE, PROG_NAME)
            try:
                # ALLOW_MULTI: a program attached without it would forbid sub-cgroups their own
                # (nested containers), and replacing needs two attached at once.
                bpf.prog_attach(cgroup_fd, prog_fd, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
                new_id = bpf.prog_id(prog_fd)
            finally:
                # The attachment holds its own reference to the program.
                os.close(prog_fd)
        for prog_id in old:
            _detach_id(cgroup_fd, prog_id)
        return new_id
    except OSError as exc:
        raise OCIError(f"device filter for {dirpath}: {describe_oserror(exc)}") from None
    finally:
        os.close(cgroup_fd)
