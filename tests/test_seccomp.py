"""Tests for seccomp: profile → BPF compilation and caching, loading in a forked child, notify hand-off.

Every filter is loaded in a forked child (the test runner never gets one); the child reports
through a pipe and ends with os._exit.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ociruntime.errors import ConfigError, OCIError
from ociruntime.linux import seccomp as lsec
from ociruntime.linux.libc import LIBC, check, syscall
from ociruntime.seccomp import compile as sc
from ociruntime.seccomp.notify import send_listener

CORPUS = Path("/work/shared/corpus/real-configs")
PR_SET_NO_NEW_PRIVS = 38
SYS_KCMP = 312
ADDR_NO_RANDOMIZE = 0x0040000
PERSONALITY_QUERY = 0xFFFFFFFF

# Enough for the child to run a little Python, report through the pipe and exit under a
# default-deny profile; everything else fails with the profile's default errno.
CHILD_NEEDS = [
    "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
    "mprotect", "futex", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "getpid", "gettid",
    "fstat", "newfstatat", "lseek", "getrandom", "clock_gettime", "sigaltstack",
]  # fmt: skip

LIBC.personality.argtypes = (ctypes.c_ulong,)
LIBC.personality.restype = ctypes.c_int


def _errno_of(fn: Callable[..., Any], *args: Any) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or -1
    return 0


def _personality(persona: int) -> int:
    """personality(2) straight from libc; 0 on success, else errno."""
    return ctypes.get_errno() if LIBC.personality(persona) == -1 else 0


def _in_child(compiled: sc.CompiledFilter, action: Callable[[], Any]) -> tuple[Any, int]:
    """Fork; the child sets no_new_privs, loads the filter, runs ``action`` and reports its result.

    Returns (decoded result or None, wait status).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
            lsec.load_filter(compiled.bpf, compiled.flags)
            result = {"ok": action()}
        except BaseException as exc:
            result = {"error": repr(exc)}
            code = 1
        try:
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return None, status
    report = json.loads(b"".join(chunks))
    assert "error" not in report, report["error"]
    return report["ok"], status


def _compile(profile: dict[str, Any], **kw: Any) -> sc.CompiledFilter:
    return sc.compile_profile(profile, **kw)


def _allowlist(default_errno: int | None, *extra: dict[str, Any]) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": CHILD_NEEDS, "action": "SCMP_ACT_ALLOW"}, *extra],
    }
    if default_errno is not None:
        profile["defaultErrnoRet"] = default_errno
    return profile


def _corpus_profiles() -> list[Path]:
    return sorted(p for p in map(Path, glob.glob(str(CORPUS / "*.json"))) if _profile_of(p) is not None)


def _profile_of(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()).get("linux", {}).get("seccomp")


# ---- compiling ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _corpus_profiles() or [None], ids=lambda p: p.name if p else "absent")
def test_compile_real_config_profiles(path: Path | None) -> None:
    if path is None:
        pytest.skip(f"{CORPUS} is absent")
    warnings: list[str] = []
    compiled = sc.compile_profile(_profile_of(path), warnings.append)
    count = lsec.validate_program(compiled.bpf)
    assert count > 10
    assert compiled.flags == 0 and not compiled.notify
    assert all(w.startswith('seccomp: unknown syscall "') for w in warnings)


def test_unknown_syscall_warns_and_is_skipped() -> None:
    warnings: list[str] = []
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall_xyz", "mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }
    compiled = sc.compile_profile(profile, warnings.append)
    assert warnings == ['seccomp: unknown syscall "no_such_syscall_xyz", ignored']
    only_known = {**profile, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    assert compiled.bpf == sc.compile_profile(only_known).bpf


@pytest.mark.parametrize(
    "profile, match",
    [
        ({"defaultAction": "SCMP_ACT_BOGUS"}, "unknown seccomp action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "ALLOW"}]},
         "unknown seccomp action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}, "unknown seccomp action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_LOG"}]},
         "names must be a list"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG",
          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "index"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG",
          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}, "known op"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG",
          "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "value"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}, "defaultErrnoRet"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "unsupported flag"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "unknown architecture"),
        ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/x.sock"}, "default action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
         "listenerPath"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
          "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]},
         "^seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall$"),
    ],
)  # fmt: skip
def test_invalid_profiles_are_config_errors(profile: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        sc.compile_profile(profile)


def test_rule_equal_to_default_action_is_skipped() -> None:
    # getrandom (318) stays the newest syscall named, so the ENOSYS stub is the same in all three.
    base = {"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "getrandom"], "action": "SCMP_ACT_ALLOW"}]}
    same = {**base, "syscalls": [*base["syscalls"], {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                                     "errnoRet": errno.EPERM}]}  # fmt: skip
    other = {**base, "syscalls": [*base["syscalls"], {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                                      "errnoRet": errno.EXDEV}]}  # fmt: skip
    assert sc.compile_profile(same).bpf == sc.compile_profile(base).bpf
    assert sc.compile_profile(other).bpf != sc.compile_profile(base).bpf


def test_flags_and_notify_fields() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                  "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
    }  # fmt: skip
    plain = sc.compile_profile(profile)
    assert plain.flags == lsec.SECCOMP_FILTER_FLAG_LOG | lsec.SECCOMP_FILTER_FLAG_SPEC_ALLOW
    assert not plain.notify and plain.listener_path == ""
    notify = sc.compile_profile(
        {
            **profile,
            "flags": [*profile["flags"], "SECCOMP_FILTER_FLAG_TSYNC"],
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "meta",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }
    )
    assert notify.notify and notify.listener_path == "/run/agent.sock" and notify.listener_metadata == "meta"
    assert notify.flags == (
        lsec.SECCOMP_FILTER_FLAG_LOG
        | lsec.SECCOMP_FILTER_FLAG_SPEC_ALLOW
        | lsec.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        | lsec.SECCOMP_FILTER_FLAG_TSYNC
        | lsec.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        | lsec.SECCOMP_FILTER_FLAG_NEW_LISTENER
    )


def test_validate_program_rejects_partial_and_oversized() -> None:
    with pytest.raises(ValueError):
        lsec.validate_program(b"")
    with pytest.raises(ValueError):
        lsec.validate_program(b"\0" * 12)
    with pytest.raises(ValueError):
        lsec.validate_program(b"\0" * 8 * (lsec.BPF_MAXINSNS + 1))
    assert lsec.validate_program(b"\0" * 16) == 2


# ---- loading in a child ----------------------------------------------------------------------


@pytest.mark.root
def test_mkdir_errno_eperm(tmp_path: Path) -> None:
    compiled = _compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        }
    )
    target = tmp_path / "d"
    result, status = _in_child(compiled, lambda: [_errno_of(os.mkdir, target), _errno_of(os.rmdir, target)])
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    # rmdir is not filtered: it reaches the kernel, which finds nothing to remove.
    assert result == [errno.EPERM, errno.ENOENT]
    assert not target.exists()


@pytest.mark.root
@pytest.mark.parametrize("default_errno, expected", [(errno.EXDEV, errno.EXDEV), (None, errno.EPERM)])
def test_default_errno_ret(tmp_path: Path, default_errno: int | None, expected: int) -> None:
    compiled = _compile(_allowlist(default_errno))
    target = tmp_path / "d"
    result, status = _in_child(compiled, lambda: [_errno_of(os.mkdir, target), os.getpid() > 0])
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert result == [expected, True]
    assert not target.exists()


@pytest.mark.root
def test_arg_filter_personality() -> None:
    rule = {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": PERSONALITY_QUERY, "op": "SCMP_CMP_EQ"}]}  # fmt: skip
    compiled = _compile(_allowlist(errno.EXDEV, rule))
    result, _ = _in_child(
        compiled, lambda: [_personality(PERSONALITY_QUERY), _personality(ADDR_NO_RANDOMIZE)]
    )
    assert result == [0, errno.EXDEV]


@pytest.mark.root
def test_repeated_arg_index_means_any_of() -> None:
    rule = {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": PERSONALITY_QUERY, "op": "SCMP_CMP_EQ"},
                     {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}  # fmt: skip
    compiled = _compile(_allowlist(errno.EXDEV, rule))
    result, _ = _in_child(
        compiled,
        lambda: [_personality(PERSONALITY_QUERY), _personality(0), _personality(ADDR_NO_RANDOMIZE)],
    )
    assert result == [0, 0, errno.EXDEV]


@pytest.mark.root
def test_distinct_arg_indexes_are_all_required() -> None:
    no_such_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    rule = {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
            "args": [{"index": 0, "value": os.PRIO_PROCESS, "op": "SCMP_CMP_EQ"},
                     {"index": 1, "value": no_such_pid, "op": "SCMP_CMP_EQ"}]}  # fmt: skip
    compiled = _compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
    result, _ = _in_child(
        compiled,
        lambda: [
            _errno_of(os.getpriority, os.PRIO_PROCESS, no_such_pid),
            _errno_of(os.getpriority, os.PRIO_PGRP, no_such_pid),
            _errno_of(os.getpriority, os.PRIO_PROCESS, 0),
        ],
    )
    assert result == [errno.EXDEV, errno.ESRCH, 0]


@pytest.mark.root
@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"])
def test_kill_action_dies_by_sigsys(action: str) -> None:
    rule = {"names": ["getppid"], "action": action}
    compiled = _compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
    result, status = _in_child(compiled, os.getppid)
    assert result is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


SYS_PIDFD_OPEN = 434
SYS_OPENAT2 = 437
SYS_FUTEX_WAITV = 449
SYS_BEYOND_ANY = 1000


def _raw_errno(nr: int, *args: int) -> int:
    """errno of a raw syscall (0 if it succeeded); arguments that make it fail harmlessly."""
    return ctypes.get_errno() if syscall(nr, *args) == -1 else 0


@pytest.mark.root
def test_syscalls_newer_than_the_profile_get_enosys(tmp_path: Path) -> None:
    # runc's patchbpf stub: above the newest syscall the profile names (here openat2, 437),
    # ENOSYS; at or below it the filter decides: the default EPERM or a rule's own errno.
    rule = {"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}
    compiled = _compile(_allowlist(None, rule))
    target = tmp_path / "d"

    def probe() -> list[int]:
        return [
            _errno_of(os.mkdir, target),
            _raw_errno(SYS_PIDFD_OPEN, os.getpid(), 0),
            _raw_errno(SYS_OPENAT2, -1, 0, 0, 0),
            _raw_errno(SYS_FUTEX_WAITV, 0, 0, 0, 0, 0),
            _raw_errno(SYS_BEYOND_ANY),
        ]

    result, status = _in_child(compiled, probe)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert result == [errno.EPERM, errno.EPERM, errno.EXDEV, errno.ENOSYS, errno.ENOSYS]


@pytest.mark.root
def test_enosys_stub_also_under_a_kill_default() -> None:
    # Only allow, log and trace defaults go without the stub: a new syscall must not kill.
    profile = {**_allowlist(None), "defaultAction": "SCMP_ACT_KILL_PROCESS"}
    result, status = _in_child(_compile(profile), lambda: _raw_errno(SYS_PIDFD_OPEN, os.getpid(), 0))
    assert os.WIFEXITED(status) and result == errno.ENOSYS


@pytest.mark.parametrize(("profile", "stub"), [
    ({"defaultAction": "SCMP_ACT_ERRNO"}, True),
    ({"defaultAction": "SCMP_ACT_KILL"}, True),
    ({"defaultAction": "SCMP_ACT_TRAP"}, True),
    ({"defaultAction": "SCMP_ACT_ALLOW"}, False),
    ({"defaultAction": "SCMP_ACT_LOG"}, False),
    ({"defaultAction": "SCMP_ACT_TRACE"}, False),
    ({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 5}, False),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS}, False),
])
def test_enosys_stub_only_when_the_default_blocks(profile: dict[str, Any], stub: bool) -> None:
    import pyseccomp

    plan = sc._plan({**profile, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_TRAP"
                                              if profile["defaultAction"] != "SCMP_ACT_TRAP"
                                              else "SCMP_ACT_ALLOW"}]})
    code = sc._enosys_stub(pyseccomp, plan)
    assert bool(code) == stub
    if stub:
        insns = [sc._INSN.unpack_from(code, i) for i in range(0, len(code), sc._INSN.size)]
        assert insns == [
            (0x20, 0, 0, 4),  # ld arch
            (0x15, 1, 0, 0xC000003E),  # jeq AUDIT_ARCH_X86_64 -> its section
            (0x05, 0, 0, 4),  # ja filter (any other arch)
            (0x20, 0, 0, 0),  # ld nr
            (0x45, 2, 0, 0x40000000),  # jset x32 bit -> filter (the profile has no x32)
            (0x25, 0, 1, 83),  # jgt mkdir -> ENOSYS, else filter
            (0x06, 0, 0, 0x50000 | errno.ENOSYS),  # ret ERRNO(ENOSYS)
        ]


def test_enosys_stub_per_architecture() -> None:
    import pyseccomp

    plan = sc._plan({"defaultAction": "SCMP_ACT_ERRNO",
                     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                     "syscalls": [{"names": ["read", "getrandom"], "action": "SCMP_ACT_ALLOW"}]})
    assert sc._newest_syscalls(pyseccomp, plan) == {
        0xC000003E: {"native": 318, "x32": 0x40000000 | 318},
        0x40000003: {"native": 355},  # i386's getrandom
    }


@pytest.mark.root
def test_podman_default_profile_in_child() -> None:
    path = CORPUS / "podman-default.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    compiled = sc.compile_profile(_profile_of(path))
    af_netlink, netlink_audit = 16, 9

    def probe() -> list[int]:
        return [
            # kcmp(self, self, KCMP_FILE, 0, 0): a read-only probe that succeeds unfiltered.
            ctypes.get_errno() if syscall(SYS_KCMP, os.getpid(), os.getpid(), 0, 0, 0) == -1 else 0,
            _errno_of(socket.socket, af_netlink, socket.SOCK_RAW, netlink_audit),
            _personality(ADDR_NO_RANDOMIZE),
            _personality(PERSONALITY_QUERY),
        ]

    result, status = _in_child(compiled, probe)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    # kcmp: ERRNO 1 rule; netlink audit socket: errnoRet 22;
    # an unlisted personality falls to defaultErrnoRet 38; the query persona is allowed.
    assert result == [errno.EPERM, errno.EINVAL, errno.ENOSYS, 0]


@pytest.mark.root
def test_load_filter_rejects_invalid_program() -> None:
    bogus = b"\xff\xff\0\0\0\0\0\0"  # an opcode the kernel's BPF checker refuses
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            os.write(w, str(_errno_of(lsec.load_filter, bogus, 0)).encode())
        finally:
            os._exit(0)
    os.close(w)
    reported = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    assert int(reported) == errno.EINVAL


@pytest.mark.root
def test_notify_filter_returns_listener_fd(tmp_path: Path) -> None:
    compiled = _compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": str(tmp_path / "agent.sock"),
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }
    )
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent_end, child_end:
        pid = os.fork()
        if pid == 0:
            try:
                LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
                fd = lsec.load_filter(compiled.bpf, compiled.flags)
                socket.send_fds(child_end, [b"fd"], [fd])
            finally:
                os._exit(0)
        _, fds, _, _ = socket.recv_fds(parent_end, 16, 1)
        os.waitpid(pid, 0)
    assert len(fds) == 1
    try:
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:seccomp notify"
    finally:
        os.close(fds[0])


# ---- notify hand-off -----------------------------------------------------------------------------


def test_send_listener_delivers_state_and_fd(tmp_path: Path) -> None:
    sock_path = str(tmp_path / "agent.sock")
    state = {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/b"}
    r, w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(sock_path)
        server.listen(1)
        send_listener(r, sock_path, state, "MKNOD=/dev/null")
        conn, _ = server.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
    try:
        doc = json.loads(msg)
        assert doc == {
            "ociVersion": "1.2.0",
            "fds": ["seccompFd"],
            "pid": 4242,
            "metadata": "MKNOD=/dev/null",
            "state": state,
        }
        assert len(fds) == 1
        assert os.fstat(fds[0]).st_ino == os.fstat(r).st_ino
    finally:
        for fd in (r, w, *fds):
            os.close(fd)


def test_send_listener_missing_agent_worded_as_runc(tmp_path: Path) -> None:
    missing = str(tmp_path / "nobody.sock")
    with pytest.raises(OCIError) as info:
        send_listener(0, missing, {"pid": 1}, "")
    assert str(info.value) == ("failed to connect with seccomp agent specified in the seccomp profile: "
                               f"dial unix {missing}: connect: no such file or directory")
    # A socket file nobody listens on any more: connection refused.
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))
    with pytest.raises(OCIError, match=f"dial unix {stale}: connect: connection refused$"):
        send_listener(0, str(stale), {"pid": 1}, "")


# ---- cache -----------------------------------------------------------------------------------------

CACHE_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["mkdir", "not_a_real_syscall"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["personality"], "action": "SCMP_ACT_LOG",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ],
}  # fmt: skip


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.suffix == ".bpf")


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every libseccomp compilation (a cache miss) in the returned list."""
    calls: list[object] = []
    real_build = sc._build_bpf

    def counting(plan: Any) -> Any:
        calls.append(plan)
        return real_build(plan)

    monkeypatch.setattr(sc, "_build_bpf", counting)
    return calls


def _forbid_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(plan: object) -> None:
        raise AssertionError("cache miss: libseccomp was called")

    monkeypatch.setattr(sc, "_build_bpf", boom)


def test_cache_hit_returns_identical_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first_warnings: list[str] = []
    first = sc.compile_profile(CACHE_PROFILE, first_warnings.append, cache_dir=str(cache))
    [entry] = _entries(cache)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert first.bpf == sc.compile_profile(CACHE_PROFILE).bpf

    _forbid_build(monkeypatch)
    again_warnings: list[str] = []
    again = sc.compile_profile(CACHE_PROFILE, again_warnings.append, cache_dir=str(cache))
    assert again == first
    assert again_warnings == first_warnings == ['seccomp: unknown syscall "not_a_real_syscall", ignored']
    # Load-time settings do not change the BPF, so they share the entry.
    moved = sc.compile_profile({**CACHE_PROFILE, "flags": ["SECCOMP_FILTER_FLAG_LOG"]}, cache_dir=str(cache))
    assert moved.bpf == first.bpf and moved.flags == lsec.SECCOMP_FILTER_FLAG_LOG
    assert len(_entries(cache)) == 1


def test_cache_key_depends_on_rules(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    sc.compile_profile({**CACHE_PROFILE, "defaultErrnoRet": 5, "defaultAction": "SCMP_ACT_ERRNO"},
                       cache_dir=str(cache))  # fmt: skip
    assert len(_entries(cache)) == 2
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def _corrupt_variants(good: bytes) -> list[bytes]:
    magic_end = good.index(b"\n") + 1
    header_end = good.index(b"\n", magic_end) + 1
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    return [
        b"",
        b"garbage",
        good[:-3],  # truncated: not whole instructions
        good[:-8],  # truncated on an instruction boundary: checksum mismatch
        bytes(flipped),
        good[:magic_end] + b"{not json\n" + good[header_end:],
    ]


@pytest.mark.parametrize("variant", range(6))
def test_corrupt_cache_entry_is_recompiled_and_rewritten(tmp_path: Path, variant: int) -> None:
    cache = tmp_path / "cache"
    good = sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    [entry] = _entries(cache)
    good_bytes = entry.read_bytes()
    entry.write_bytes(_corrupt_variants(good_bytes)[variant])
    again = sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    assert again.bpf == good.bpf
    assert entry.read_bytes() == good_bytes


def test_untrusted_cache_entry_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    [entry] = _entries(cache)
    entry.chmod(0o666)
    calls = _count_builds(monkeypatch)
    sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    assert len(calls) == 1
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_unwritable_cache_warns_and_still_compiles(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    warnings: list[str] = []
    compiled = sc.compile_profile(CACHE_PROFILE, warnings.append, cache_dir=str(blocker / "cache"))
    assert lsec.validate_program(compiled.bpf)
    assert any(w.startswith("seccomp: cannot write cache entry") for w in warnings)


def test_cache_dir_others_can_write_is_unused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory others can write could hold a planted filter: neither read nor written."""
    cache = tmp_path / "cache"
    sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    cache.chmod(0o777)
    calls = _count_builds(monkeypatch)
    warnings: list[str] = []
    sc.compile_profile(CACHE_PROFILE, warnings.append, cache_dir=str(cache))
    assert len(calls) == 1
    assert any(w.startswith("seccomp: cannot write cache entry") for w in warnings)


def test_cache_is_bounded_least_recently_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(sc, "_CACHE_MAX_ENTRIES", 3)
    profiles = [{"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": n}]}
                for n in range(1, 6)]  # fmt: skip
    names = []
    for age, profile in enumerate(profiles):
        sc.compile_profile(profile, cache_dir=str(cache))
        [new] = set(_entries(cache)) - {cache / n for n in names}
        names.append(new.name)
        # Distinct, increasing last-use times without sleeping.
        os.utime(new, (1000 + age, 1000 + age))
        if age == 3:
            sc.compile_profile(profiles[0], cache_dir=str(cache))  # a hit refreshes entry 0
            assert (cache / names[0]).stat().st_mtime > 1_000_000  # now, not 1000
    left = {p.name for p in _entries(cache)}
    assert len(left) == 3
    assert left == {names[0], names[3], names[4]}  # entries 1 and 2 were least recently used
    stale = cache / ".tmp-stale"
    stale.write_bytes(b"x")
    os.utime(stale, (1000, 1000))
    fresh = cache / ".tmp-fresh"
    fresh.write_bytes(b"x")
    sc.compile_profile(profiles[1], cache_dir=str(cache))
    assert not stale.exists() and fresh.exists()
    assert len(_entries(cache)) == 3


def test_light_imports_stay_light(tmp_path: Path) -> None:
    """notify and the child loader never pull in pyseccomp; a cache hit does not either."""
    cache = tmp_path / "cache"
    sc.compile_profile(CACHE_PROFILE, cache_dir=str(cache))
    code = (
        "import sys, json\n"
        "import ociruntime.seccomp.notify, ociruntime.linux.seccomp\n"
        "assert 'pyseccomp' not in sys.modules\n"
        "from ociruntime.seccomp.compile import compile_profile\n"
        f"compile_profile(json.loads({json.dumps(json.dumps(CACHE_PROFILE))}), cache_dir={str(cache)!r})\n"
        "assert 'pyseccomp' not in sys.modules, 'cache hit imported pyseccomp'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
