"""Tests for the cgroup v2 device filter: bpf_insn encoding, the compiled programs, the manager's
v2 wiring (with the bpf layer mocked), and, as root, the kernel enforcing the program.

The programs are checked three ways: instruction lists derived by hand for small rule lists; a
tiny interpreter for the handful of opcodes the compiler emits, run against a per-access-bit
"last matching rule wins" reference on many generated rule lists; and the real kernel.
"""

from __future__ import annotations

import errno
import json
import os
import random
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from ociruntime.cgroups import Layout, Mount, detect_layout, devices, ebpf, new_manager
from ociruntime.cgroups.devices import Rule
from ociruntime.errors import OCIError
from ociruntime.linux import bpf
from ociruntime.linux.bpf import Insn

PROLOGUE = [
    (0x61, 2, 1, 0, 0),  # r2 = *(u32 *)(r1 + 0)
    (0x54, 2, 0, 0, 0xFFFF),  # w2 &= 0xffff
    (0x61, 3, 1, 0, 0),  # r3 = *(u32 *)(r1 + 0)
    (0x74, 3, 0, 0, 16),  # w3 >>= 16
    (0x61, 4, 1, 4, 0),  # r4 = *(u32 *)(r1 + 4)
    (0x61, 5, 1, 8, 0),  # r5 = *(u32 *)(r1 + 8)
]


def _tuples(insns: list[Insn]) -> list[tuple[int, int, int, int, int]]:
    return [(i.code, i.dst, i.src, i.off, i.imm) for i in insns]


def _rules(*spec: dict) -> list[Rule]:
    return devices.parse_rules(list(spec))


DENY_ALL = {"allow": False, "access": "rwm"}
ALLOW_ALL = {"allow": True, "access": "rwm"}


def _dev(allow: bool, typ: str, major: int | None, minor: int | None, access: str) -> dict:
    return {"allow": allow, "type": typ, "major": major, "minor": minor, "access": access}


# --- encoding -----------------------------------------------------------------------------------
def test_insn_pack_layout() -> None:
    # code, then dst in the low nibble and src in the high nibble, then s16 off and s32 imm (LE).
    assert Insn(0x61, dst=2, src=1, off=4, imm=-1).pack() == bytes(
        [0x61, 0x12, 0x04, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]
    )
    assert Insn(0x55, dst=5, off=-2, imm=0x01020304).pack() == bytes(
        [0x55, 0x05, 0xFE, 0xFF, 0x04, 0x03, 0x02, 0x01]
    )
    assert Insn(0x95).pack() == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    assert bpf.assemble([Insn(0xB4, imm=1), Insn(0x95)]) == bytes.fromhex("b400000001000000 9500000000000000")


def test_insn_rejects_bad_register() -> None:
    with pytest.raises(ValueError, match="register"):
        Insn(0xBC, dst=11).pack()


# --- hand-derived programs ------------------------------------------------------------------------
def test_program_deny_all_allow_null_and_zero_read() -> None:
    insns = ebpf.compile_rules(
        _rules(DENY_ALL, _dev(True, "c", 1, 3, "rwm"), _dev(True, "c", 1, 5, "r"))
    )
    assert _tuples(insns) == [
        *PROLOGUE,
        # last rule first: c 1:5 r (allow, partial access); "next" is insn 16
        (0x55, 2, 0, 9, 2),  # 6: if r2 != CHAR goto 16
        (0x55, 4, 0, 8, 1),  # 7: if r4 != 1 goto 16
        (0x55, 5, 0, 7, 5),  # 8: if r5 != 5 goto 16
        (0xBC, 1, 3, 0, 0),  # 9: w1 = w3
        (0x54, 1, 0, 0, 2),  # 10: w1 &= READ
        (0x15, 1, 0, 4, 0),  # 11: if r1 == 0 goto 16 (asks for none of r)
        (0x54, 3, 0, 0, ~2),  # 12: w3 &= ~READ (read is decided: allowed)
        (0x55, 3, 0, 2, 0),  # 13: if r3 != 0 goto 16 (more bits to decide)
        (0xB4, 0, 0, 0, 1),  # 14: w0 = 1
        (0x95, 0, 0, 0, 0),  # 15: exit
        # c 1:3 rwm (allow): no access test needed
        (0x55, 2, 0, 4, 2),  # 16: if r2 != CHAR goto 21
        (0x55, 4, 0, 3, 1),  # 17
        (0x55, 5, 0, 2, 3),  # 18
        (0xB4, 0, 0, 0, 1),  # 19: w0 = 1
        (0x95, 0, 0, 0, 0),  # 20: exit
        # "a *:* rwm" deny is the default verdict, not a block
        (0xB4, 0, 0, 0, 0),  # 21: w0 = 0
        (0x95, 0, 0, 0, 0),  # 22: exit
    ]


def test_program_partial_deny_and_wildcards() -> None:
    # Default allow; a deny naming only w refuses any request that includes w.
    insns = ebpf.compile_rules(_rules(ALLOW_ALL, _dev(False, "c", 1, 3, "w")))
    assert _tuples(insns) == [
        *PROLOGUE,
        (0x55, 2, 0, 7, 2),
        (0x55, 4, 0, 6, 1),
        (0x55, 5, 0, 5, 3),
        (0xBC, 1, 3, 0, 0),
        (0x54, 1, 0, 0, 4),  # WRITE
        (0x15, 1, 0, 2, 0),
        (0xB4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        (0xB4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
    ]
    # type "a" skips the type test; "*" skips the number tests.
    insns = ebpf.compile_rules(_rules(_dev(True, "a", None, 7, "rw"), _dev(False, "b", 8, None, "rwm")))
    assert _tuples(insns) == [
        *PROLOGUE,
        (0x55, 2, 0, 3, 1),  # if r2 != BLOCK goto next
        (0x55, 4, 0, 2, 8),
        (0xB4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        (0x55, 5, 0, 7, 7),  # minor 7, any type, any major
        (0xBC, 1, 3, 0, 0),
        (0x54, 1, 0, 0, 6),  # READ|WRITE
        (0x15, 1, 0, 4, 0),
        (0x54, 3, 0, 0, ~6),
        (0x55, 3, 0, 2, 0),
        (0xB4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
        (0xB4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
    ]


def test_effective_rules_prunes_dead_and_redundant() -> None:
    deny_null = _dev(False, "c", 1, 3, "rwm")
    allow_zero = _dev(True, "c", 1, 5, "rwm")
    # rules before the last full wildcard are dead; earliest rules with the default's action
    # add nothing; numbers no device has cannot match
    rules = _rules(allow_zero, ALLOW_ALL, deny_null, DENY_ALL, deny_null, allow_zero,
                   _dev(True, "c", 2**31, None, "rwm"))
    assert ebpf.effective(rules) == (False, _rules(allow_zero))
    assert ebpf.effective(_rules(DENY_ALL, ALLOW_ALL, allow_zero)) == (True, [])
    assert ebpf.effective([]) == (False, [])
    # a wildcard with partial access is a rule, not a reset
    assert ebpf.effective(_rules(_dev(True, "a", None, None, "m"))) == (
        False, _rules(_dev(True, "a", None, None, "m"))
    )
    assert _tuples(ebpf.compile_rules([])) == [*PROLOGUE, (0xB4, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]


def test_runc_default_rule_list_size() -> None:
    insns = ebpf.compile_rules(devices.effective_rules([DENY_ALL]))
    # 6 prologue + 2 mknod wildcards (8 each) + 7 exact devices (5 each) + pts (4) + verdict (2)
    assert len(insns) == 63
    assert len(bpf.assemble(insns)) == 63 * 8


# --- semantics against a reference ---------------------------------------------------------------
def _run(text: bytes, dev_type: int, major: int, minor: int, access: int) -> int:
    """Interpret the opcodes the compiler emits, with the verifier's basic rules asserted."""
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    prog = [struct.unpack_from("<BBhi", text, i) for i in range(0, len(text), 8)]
    regs: dict[int, int] = {}
    ctx_in_r1, pc = True, 0
    while True:
        assert 0 <= pc < len(prog), "fell off the program"
        code, regbyte, off, imm = prog[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == 0x61:  # ldxw from the context
            assert src == 1 and ctx_in_r1 and off in (0, 4, 8)
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:  # and32 imm
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif code == 0x74:  # rsh32 imm
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xBC:  # mov32 reg
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0xB4:  # mov32 imm
            regs[dst] = imm & 0xFFFFFFFF
        elif code in (0x55, 0x15):  # jne / jeq imm, 64-bit compare with sign-extended imm
            assert off >= 0, "backward jump"
            if (regs[dst] != imm) == (code == 0x55):
                pc += off
        elif code == 0x95:
            assert regs[0] in (0, 1)
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        if dst == 1 and code != 0x55 and code != 0x15:
            ctx_in_r1 = False


def _reference(rules: list[Rule], typ: str, major: int, minor: int, access: int) -> bool:
    """Each requested bit is decided by the last rule naming it and the device; default deny."""
    for bit in (1, 2, 4):
        if not access & bit:
            continue
        verdict = False
        for r in rules:
            if (
                r.type in ("a", typ)
                and r.major in (None, major)
                and r.minor in (None, minor)
                and ebpf.access_mask(r.access) & bit
            ):
                verdict = r.allow
        if not verdict:
            return False
    return True


def _random_rule(rng: random.Random) -> Rule:
    access = "".join(c for c in "rwm" if rng.random() < 0.5) or rng.choice("rwm")
    if rng.random() < 0.1:
        access = "rwm"
    return Rule(
        rng.random() < 0.5,
        rng.choice("abcc"),
        rng.choice([None, 1, 2]),
        rng.choice([None, 3, 5]),
        access,
    )


def _check_against_reference(rules: list[Rule]) -> None:
    text = bpf.assemble(ebpf.compile_rules(rules))
    for typ, code in (("b", 1), ("c", 2)):
        for major in (1, 2, 3):
            for minor in (3, 5, 6):
                for access in range(1, 8):
                    got = _run(text, code, major, minor, access)
                    want = _reference(rules, typ, major, minor, access)
                    assert got == int(want), (rules, typ, major, minor, access)


def test_program_matches_last_match_wins_reference() -> None:
    rng = random.Random(20240611)
    for _ in range(250):
        rules = [_random_rule(rng) for _ in range(rng.randint(0, 7))]
        if rng.random() < 0.3:
            rules.insert(rng.randint(0, len(rules)), Rule(rng.random() < 0.5))
        _check_against_reference(rules)
    _check_against_reference(devices.effective_rules([DENY_ALL]))


def test_split_access_rules() -> None:
    # O_RDWR asks for r and w in one request: two allow rules that together cover it pass it,
    # and a later deny of w alone refuses it.
    split = _rules(_dev(True, "c", 1, 3, "r"), _dev(True, "c", 1, 3, "w"))
    text = bpf.assemble(ebpf.compile_rules(split))
    assert _run(text, 2, 1, 3, 2 | 4) == 1
    assert _run(text, 2, 1, 3, 1 | 2) == 0  # mknod never allowed
    text = bpf.assemble(ebpf.compile_rules(_rules(_dev(True, "c", 1, 3, "rwm"), _dev(False, "c", 1, 3, "w"))))
    assert _run(text, 2, 1, 3, 2 | 4) == 0
    assert _run(text, 2, 1, 3, 2) == 1


# --- manager wiring, bpf layer mocked --------------------------------------------------------------
class FakeBpf:
    """Records the bpf calls ebpf.install makes; fds handed out are real (install closes them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, attached: list[int]) -> None:
        self.calls: list[tuple] = []
        self.attached = list(attached)
        for name in ("prog_query", "prog_load", "prog_attach", "prog_id", "prog_get_fd_by_id", "prog_detach"):
            monkeypatch.setattr(bpf, name, getattr(self, name))

    @staticmethod
    def _fd() -> int:
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

    def prog_query(self, fd: int, attach_type: int) -> list[int]:
        self.calls.append(("query", os.readlink(f"/proc/self/fd/{fd}"), attach_type))
        return list(self.attached)

    def prog_load(self, prog_type: int, text: bytes, license: str, name: str) -> int:
        self.calls.append(("load", prog_type, text, license))
        return self._fd()

    def prog_attach(self, target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
        self.calls.append(("attach", attach_type, flags))

    def prog_id(self, prog_fd: int) -> int:
        return 42

    def prog_get_fd_by_id(self, prog_id: int) -> int:
        self.calls.append(("get", prog_id))
        return self._fd()

    def prog_detach(self, target_fd: int, prog_fd: int, attach_type: int) -> None:
        self.calls.append(("detach", attach_type))


def _v2_manager(tmp_path: Path):
    mgr = new_manager("/c", "id", root=str(tmp_path), layout=Layout("v2", {}, Mount(str(tmp_path))))
    mgr.create()
    return mgr


def test_manager_v2_device_rules_install_a_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = _v2_manager(tmp_path)
    fake = FakeBpf(monkeypatch, attached=[7, 9])
    spec = [DENY_ALL, _dev(True, "b", 8, None, "r")]
    mgr.set_resources({"devices": spec})  # used to raise "not supported yet"
    text = bpf.assemble(ebpf.compile_rules(devices.effective_rules(spec)))
    cg = str(tmp_path / "c")
    assert fake.calls == [
        ("query", cg, bpf.BPF_CGROUP_DEVICE),
        ("load", bpf.BPF_PROG_TYPE_CGROUP_DEVICE, text, "Apache"),
        ("attach", bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI),
        ("get", 7),
        ("detach", bpf.BPF_CGROUP_DEVICE),
        ("get", 9),
        ("detach", bpf.BPF_CGROUP_DEVICE),
    ]
    # no devices key: runc's defaults only, still a filter
    fake.calls.clear()
    mgr.set_resources({})
    assert fake.calls[1][2] == bpf.assemble(ebpf.compile_rules(list(devices.DEFAULT_RULES)))
    # allow-all: no program, the old ones are removed
    fake.calls.clear()
    fake.attached = [42]
    mgr.set_resources({"devices": [ALLOW_ALL]})
    assert fake.calls == [
        ("query", cg, bpf.BPF_CGROUP_DEVICE), ("get", 42), ("detach", bpf.BPF_CGROUP_DEVICE)
    ]
    # skip_devices leaves the filter alone
    fake.calls.clear()
    mgr.set_resources({"devices": spec}, skip_devices=True)
    assert fake.calls == []


def test_manager_hybrid_keeps_v1_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in ("devices", "unified"):
        (tmp_path / d).mkdir()
    lay = Layout("hybrid", {"devices": Mount(str(tmp_path / "devices"))}, Mount(str(tmp_path / "unified")))
    mgr = new_manager("/c", "id", root=str(tmp_path), layout=lay)
    mgr.create()
    fake = FakeBpf(monkeypatch, attached=[])
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(devices.files, "write", lambda d, n, v: written.append((n, v)))
    mgr.set_resources({"devices": [DENY_ALL]})
    assert fake.calls == []
    assert written[0] == ("devices.deny", "a")


def test_install_errors_name_the_cgroup_and_the_verifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OCIError, match=rf"device filter: open {tmp_path}/missing: no such file"):
        ebpf.install(str(tmp_path / "missing"), _rules(DENY_ALL))
    FakeBpf(monkeypatch, attached=[])

    def refuse(*_args: object) -> int:
        raise bpf.VerifierError(errno.EACCES, "0: (95) exit\nR0 !read_ok\nprocessed 1 insns\n")

    monkeypatch.setattr(bpf, "prog_load", refuse)
    with pytest.raises(OCIError) as ei:
        ebpf.install(str(tmp_path), _rules(DENY_ALL))
    assert str(ei.value) == (
        f"device filter for {tmp_path}: bpf BPF_PROG_LOAD (verifier: 0: (95) exit; R0 !read_ok; "
        "processed 1 insns): permission denied"
    )


# --- the kernel ---------------------------------------------------------------------------------------
def _unified_mount() -> str | None:
    if os.geteuid() != 0:
        return None
    lay = detect_layout()
    return lay.unified.mountpoint if lay.unified is not None else None


UNIFIED_MOUNT = _unified_mount()
needs_cgroup2 = pytest.mark.skipif(UNIFIED_MOUNT is None, reason="needs root and a cgroup2 mount")


def _open(path: str, flags: int) -> Callable[[str], None]:
    def attempt(_tmp: str) -> None:
        os.close(os.open(path, flags | os.O_CLOEXEC))

    return attempt


def _mknod(kind: int, major: int, minor: int) -> Callable[[str], None]:
    def attempt(tmp: str) -> None:
        node = os.path.join(tmp, f"node-{major}-{minor}")
        os.mknod(node, kind | 0o600, os.makedev(major, minor))
        os.unlink(node)

    return attempt


CHECKS: dict[str, Callable[[str], None]] = {
    "null rw": _open("/dev/null", os.O_RDWR),
    "zero r": _open("/dev/zero", os.O_RDONLY),
    "zero w": _open("/dev/zero", os.O_WRONLY),
    "zero rw": _open("/dev/zero", os.O_RDWR),
    "full r": _open("/dev/full", os.O_RDONLY),
    "full w": _open("/dev/full", os.O_WRONLY),
    "mknod c 1:3": _mknod(stat.S_IFCHR, 1, 3),
    "mknod c 1:5": _mknod(stat.S_IFCHR, 1, 5),
    "mknod b 7:0": _mknod(stat.S_IFBLK, 7, 0),
}
OK, EPERM = 0, errno.EPERM


def _probe(cgroups: list[str], tmp: str) -> dict[str, int]:
    """Run CHECKS in a forked child that first joins ``cgroups``; errno per check (0 = allowed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            for cg in cgroups:
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            out = {}
            for name, attempt in CHECKS.items():
                try:
                    attempt(tmp)
                    out[name] = 0
                except OSError as exc:
                    out[name] = exc.errno or -1
            os.write(w, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(b"".join(chunks))


def _attached(cg: str) -> list[int]:
    fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bpf.prog_query(fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(fd)


@pytest.mark.root
@needs_cgroup2
def test_kernel_enforces_and_update_replaces(tmp_path: Path) -> None:
    assert UNIFIED_MOUNT is not None
    cg = os.path.join(UNIFIED_MOUNT, f"ociruntime-test-{os.getpid()}")
    os.mkdir(cg)
    try:
        assert set(_probe([cg], str(tmp_path)).values()) == {OK}  # baseline: nothing restricts us

        first = ebpf.install(cg, _rules(DENY_ALL, _dev(True, "c", 1, 3, "rwm"), _dev(True, "c", 1, 5, "r")))
        assert first is not None and _attached(cg) == [first]
        assert _probe([cg], str(tmp_path)) == {
            "null rw": OK, "zero r": OK, "zero w": EPERM, "zero rw": EPERM, "full r": EPERM,
            "full w": EPERM, "mknod c 1:3": OK, "mknod c 1:5": EPERM, "mknod b 7:0": EPERM,
        }

        # update: a new policy, with a deny after an allow (last match wins)
        second = ebpf.install(cg, _rules(
            DENY_ALL, _dev(True, "c", 1, 5, "rwm"), _dev(True, "c", 1, 7, "r"), _dev(False, "c", 1, 5, "w")
        ))
        assert second is not None and second != first
        assert _attached(cg) == [second]
        assert _probe([cg], str(tmp_path)) == {
            "null rw": EPERM, "zero r": OK, "zero w": EPERM, "zero rw": EPERM, "full r": OK,
            "full w": EPERM, "mknod c 1:3": EPERM, "mknod c 1:5": OK, "mknod b 7:0": EPERM,
        }

        # allowing everything needs no program: the old one goes
        assert ebpf.install(cg, _rules(ALLOW_ALL)) is None
        assert _attached(cg) == []
        assert set(_probe([cg], str(tmp_path)).values()) == {OK}
    finally:
        os.rmdir(cg)


@pytest.mark.root
@needs_cgroup2
def test_v1_devices_and_bpf_filter_both_apply(tmp_path: Path) -> None:
    lay = detect_layout()
    if "devices" not in lay.v1:
        pytest.skip("no v1 devices controller (not a hybrid host)")
    assert UNIFIED_MOUNT is not None
    name = f"ociruntime-test-{os.getpid()}"
    cg2, cg1 = os.path.join(UNIFIED_MOUNT, name), os.path.join(lay.v1["devices"].mountpoint, name)
    os.mkdir(cg2)
    try:
        os.mkdir(cg1)
        try:
            # v1 refuses writes to /dev/zero; the program refuses /dev/full; each alone would allow
            # the other's device.
            with open(os.path.join(cg1, "devices.deny"), "w") as f:
                f.write("c 1:5 w")
            ebpf.install(cg2, _rules(DENY_ALL, _dev(True, "c", 1, 3, "rwm"), _dev(True, "c", 1, 5, "rwm")))
            got = _probe([cg1, cg2], str(tmp_path))
            assert (got["null rw"], got["zero r"], got["zero w"], got["full r"]) == (OK, OK, EPERM, EPERM)
        finally:
            os.rmdir(cg1)
    finally:
        os.rmdir(cg2)


@pytest.mark.root
@needs_cgroup2
def test_kernel_verifier_message_is_reported() -> None:
    with pytest.raises(bpf.VerifierError) as ei:
        bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, bpf.assemble([Insn(0x95)]), ebpf.LICENSE)
    assert ei.value.errno == errno.EACCES
    assert "R0 !read_ok" in ei.value.log
    assert "R0 !read_ok" in str(ei.value)


@pytest.mark.root
@needs_cgroup2
def test_install_on_a_non_cgroup_directory(tmp_path: Path) -> None:
    want = rf"device filter for {tmp_path}: bpf BPF_PROG_QUERY: bad file descriptor"
    with pytest.raises(OCIError, match=want):
        ebpf.install(str(tmp_path), _rules(DENY_ALL))
