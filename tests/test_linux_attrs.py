"""Tests for the process-attribute wrappers: rlimit, ids, sched, personality, keyring, prctl,
signals and fds.  Everything that mutates the process runs in a forked child."""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from ociruntime.linux import fds, ids, keyring, personality, prctl, rlimit, sched, signals
from ociruntime.linux.libc import syscall

# The child's end of the result pipe, so fd-closing tests can keep it open.
REPORT_FD = -1


def run_in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child; return its result or re-raise its exception here."""
    global REPORT_FD
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            REPORT_FD = w
            try:
                payload = pickle.dumps(("ok", fn()))
            except BaseException as exc:
                payload = pickle.dumps(("err", exc))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value


def status_field(name: str, pid: int | str = "self") -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise KeyError(name)


# ---------------------------------------------------------------- imports


def test_modules_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import ociruntime.linux.caps, ociruntime.linux.rlimit, ociruntime.linux.ids\n"
        "import ociruntime.linux.sched, ociruntime.linux.personality, ociruntime.linux.keyring\n"
        "import ociruntime.linux.prctl, ociruntime.linux.signals, ociruntime.linux.fds\n"
        "bad = {'jsonschema', 'pyroute2', 'pyseccomp', 'seccomp', 'prctl'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- rlimit


def test_rlimit_table() -> None:
    assert len(rlimit.RLIMITS) == 16
    assert sorted(rlimit.RLIMITS.values()) == list(range(16))
    assert rlimit.RLIMITS["RLIMIT_NOFILE"] == 7
    assert rlimit.RLIMITS["RLIMIT_RTTIME"] == 15


@pytest.mark.root
def test_set_rlimit_in_child() -> None:
    def child() -> tuple[tuple[int, int], tuple[int, int], str]:
        rlimit.set_rlimit(rlimit.RLIMITS["RLIMIT_NOFILE"], 100, 200)
        rlimit.set_rlimit(rlimit.RLIMITS["RLIMIT_CORE"], 4096, rlimit.RLIM_INFINITY)
        with open("/proc/self/limits") as f:
            limits = f.read()
        return (
            rlimit.get_rlimit(rlimit.RLIMITS["RLIMIT_NOFILE"]),
            rlimit.get_rlimit(rlimit.RLIMITS["RLIMIT_CORE"]),
            limits,
        )

    if rlimit.get_rlimit(rlimit.RLIMITS["RLIMIT_CORE"])[1] != rlimit.RLIM_INFINITY:
        pytest.skip("core hard limit is not unlimited here")
    nofile, core, limits = run_in_child(child)
    assert nofile == (100, 200)
    assert core == (4096, rlimit.RLIM_INFINITY)
    assert any(line.startswith("Max open files") and "100" in line and "200" in line
               for line in limits.splitlines())


def test_set_rlimit_soft_above_hard_names_rlimit() -> None:
    with pytest.raises(OSError) as info:
        run_in_child(lambda: rlimit.set_rlimit(rlimit.RLIMITS["RLIMIT_NOFILE"], 300, 200))
    assert info.value.errno == errno.EINVAL
    assert info.value.filename == "RLIMIT_NOFILE"
    assert "prlimit RLIMIT_NOFILE" in str(info.value)


@pytest.mark.parametrize("bad", [-1, 2**64, True])
def test_set_rlimit_range(bad: int) -> None:
    with pytest.raises(ValueError, match="RLIMIT_NOFILE"):
        rlimit.set_rlimit(rlimit.RLIMITS["RLIMIT_NOFILE"], bad, 10)


# ---------------------------------------------------------------- ids


@pytest.mark.root
def test_set_groups_and_ids() -> None:
    def child() -> tuple[Any, Any, list[int]]:
        ids.set_groups([5, 7, 4294967294])
        ids.set_ids(1000, 1001)
        return os.getresuid(), os.getresgid(), sorted(os.getgroups())

    uids, gids, groups = run_in_child(child)
    assert uids == (1000, 1000, 1000)
    assert gids == (1001, 1001, 1001)
    assert groups == [5, 7, 4294967294]


@pytest.mark.root
def test_set_groups_empty() -> None:
    assert run_in_child(lambda: (ids.set_groups([]), os.getgroups())[1]) == []


@pytest.mark.parametrize("bad", [-1, 2**32 - 1, 2**32, True, "0"])
def test_ids_range_checked_before_ctypes(bad: Any) -> None:
    with pytest.raises(ValueError):
        ids.set_ids(bad, 0)
    with pytest.raises(ValueError):
        ids.set_ids(0, bad)
    with pytest.raises(ValueError):
        ids.set_groups([bad])


@pytest.mark.root
def test_set_ids_failure_is_oserror() -> None:
    def child() -> None:
        ids.set_ids(1000, 1000)
        ids.set_ids(0, 0)

    with pytest.raises(OSError) as info:
        run_in_child(child)
    assert info.value.errno == errno.EPERM
    assert "setresgid" in str(info.value)


# ---------------------------------------------------------------- sched


def test_sched_attr_layout() -> None:
    assert ctypes.sizeof(sched.SchedAttr) == 56
    attr = sched.sched_attr(
        "SCHED_DEADLINE", 0, 0, ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM"], 1, 2, 3
    )
    assert (attr.size, attr.sched_policy, attr.sched_flags) == (56, 6, 3)
    assert (attr.sched_runtime, attr.sched_deadline, attr.sched_period) == (1, 2, 3)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("SCHED_NOPE", 0, 0, [], 0, 0, 0), "unknown scheduler policy"),
        (("SCHED_OTHER", 0, 0, ["SCHED_FLAG_X"], 0, 0, 0), "unknown scheduler flag"),
        (("SCHED_OTHER", -1, 0, [], 0, 0, 0), "priority"),
        (("SCHED_OTHER", 0, 2**31, [], 0, 0, 0), "nice"),
        (("SCHED_DEADLINE", 0, 0, [], -1, 0, 0), "runtime"),
    ],
)
def test_sched_attr_rejects(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sched.sched_attr(*args)


@pytest.mark.root
def test_set_scheduler_batch_with_nice() -> None:
    def child() -> tuple[int, int]:
        sched.set_scheduler("SCHED_BATCH", 0, 7, [], 0, 0, 0)
        return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)

    assert run_in_child(child) == (os.SCHED_BATCH, 7)


@pytest.mark.root
def test_set_scheduler_fifo_reset_on_fork() -> None:
    def child() -> tuple[int, int]:
        sched.set_scheduler("SCHED_FIFO", 10, 0, ["SCHED_FLAG_RESET_ON_FORK"], 0, 0, 0)
        return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    assert run_in_child(child) == (os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 10)


@pytest.mark.root
def test_set_scheduler_kernel_error_names_call() -> None:
    # SCHED_OTHER takes no static priority: the kernel answers EINVAL.
    with pytest.raises(OSError) as info:
        run_in_child(lambda: sched.set_scheduler("SCHED_OTHER", 5, 0, [], 0, 0, 0))
    assert info.value.errno == errno.EINVAL
    assert "sched_setattr" in str(info.value)


@pytest.mark.parametrize(
    ("cls", "prio", "value"),
    [
        ("IOPRIO_CLASS_RT", 0, 1 << 13),
        ("IOPRIO_CLASS_BE", 4, (2 << 13) | 4),
        ("IOPRIO_CLASS_IDLE", 7, (3 << 13) | 7),
    ],
)
def test_ioprio_value(cls: str, prio: int, value: int) -> None:
    assert sched.ioprio_value(cls, prio) == value


@pytest.mark.parametrize(
    ("cls", "prio"), [("IOPRIO_CLASS_NONE", 0), ("IOPRIO_CLASS_BE", 8), ("IOPRIO_CLASS_BE", -1)]
)
def test_ioprio_value_rejects(cls: str, prio: int) -> None:
    with pytest.raises(ValueError):
        sched.ioprio_value(cls, prio)


@pytest.mark.root
def test_set_ioprio_in_child() -> None:
    sys_ioprio_get = 252

    def child() -> int:
        sched.set_ioprio("IOPRIO_CLASS_BE", 3)
        return syscall(sys_ioprio_get, sched.IOPRIO_WHO_PROCESS, 0)

    assert run_in_child(child) == (2 << 13) | 3


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0-3,7", {0, 1, 2, 3, 7}), (" 1 , 4-5 ", {1, 4, 5}), ("2-2", {2}), ("3,1,3", {1, 3})],
)
def test_parse_cpu_list(text: str, cpus: set[int]) -> None:
    assert sched.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", ",", "1-", "-1", "3-1", "a", "1,,2", "1-2-3", "\u00b2"])
def test_parse_cpu_list_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        sched.parse_cpu_list(text)


def test_format_cpu_list() -> None:
    assert sched.format_cpu_list({0, 1, 2, 3, 7, 9, 10}) == "0-3,7,9-10"
    assert sched.format_cpu_list(set()) == ""


@pytest.mark.root
def test_set_affinity_in_child() -> None:
    first = min(os.sched_getaffinity(0))
    assert run_in_child(lambda: (sched.set_affinity({first}), os.sched_getaffinity(0))[1]) == {first}


def test_set_affinity_error_names_list() -> None:
    with pytest.raises(OSError) as info:
        run_in_child(lambda: sched.set_affinity({4000, 4001}))
    assert info.value.errno == errno.EINVAL
    assert info.value.filename == "4000-4001"


# ---------------------------------------------------------------- personality


def test_personality_value() -> None:
    assert personality.PERSONALITIES == {"LINUX": 0x0000, "LINUX32": 0x0008}
    assert personality.personality_value("LINUX32", ["ADDR_NO_RANDOMIZE"]) == 0x0040008
    with pytest.raises(ValueError, match="domain"):
        personality.personality_value("WIN32", [])
    with pytest.raises(ValueError, match="flag"):
        personality.personality_value("LINUX", ["NOPE"])


@pytest.mark.root
def test_set_personality_in_child() -> None:
    def child() -> tuple[int, str]:
        personality.set_personality("LINUX32", ["ADDR_NO_RANDOMIZE"])
        with open("/proc/self/personality") as f:
            return personality.get_personality(), f.read().strip()

    value, proc = run_in_child(child)
    assert value == 0x0040008
    assert int(proc, 16) == 0x0040008
    assert personality.get_personality() & 0xFF == 0  # the runner stays LINUX


# ---------------------------------------------------------------- keyring


@pytest.mark.root
def test_join_session_keyring_and_perm() -> None:
    name = keyring.session_keyring_name(f"test-{os.getpid()}")

    def child() -> tuple[int, tuple, tuple]:
        serial = keyring.join_session_keyring(name)
        before = keyring.describe_key()
        keyring.set_keyring_perm(keyring.keyring_search_bits(user_namespace=False))
        return serial, before, keyring.describe_key(serial)

    try:
        serial, before, after = run_in_child(child)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            pytest.skip("kernel without keyrings")
        raise
    assert serial > 0
    assert before[0] == "keyring" and before[4] == name
    assert before[3] & keyring.KEY_USR_SEARCH == 0
    assert after[3] == before[3] | keyring.KEY_USR_SEARCH


@pytest.mark.root
def test_set_keyring_perm_mask_and_anonymous_keyring() -> None:
    def child() -> tuple[tuple, tuple]:
        keyring.join_session_keyring(None)
        anon = keyring.describe_key()
        keyring.set_keyring_perm(keyring.KEY_OTH_SEARCH, mask=0x3F000000)
        return anon, keyring.describe_key()

    try:
        anon, after = run_in_child(child)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            pytest.skip("kernel without keyrings")
        raise
    assert anon[4] == "_ses"
    assert after[3] == (anon[3] & 0x3F000000) | keyring.KEY_OTH_SEARCH
    assert keyring.keyring_search_bits(user_namespace=True) == 0x8


# ---------------------------------------------------------------- prctl


@pytest.mark.root
def test_prctl_setters_in_child() -> None:
    pr_get_pdeathsig, pr_get_dumpable, pr_get_child_subreaper = 2, 3, 37

    def child() -> dict[str, Any]:
        out: dict[str, Any] = {"nnp_before": prctl.get_no_new_privs()}
        prctl.set_no_new_privs()
        prctl.set_dumpable(False)
        prctl.set_pdeathsig(signal.SIGTERM)
        prctl.set_child_subreaper(True)
        prctl.set_name(b"ociruntime-init-long-name")
        value = ctypes.c_int(-1)
        prctl.prctl(pr_get_pdeathsig, ctypes.addressof(value))
        reaper = ctypes.c_int(-1)
        prctl.prctl(pr_get_child_subreaper, ctypes.addressof(reaper))
        with open("/proc/self/comm") as f:
            comm = f.read().strip()
        out.update(
            nnp=prctl.get_no_new_privs(),
            nnp_status=status_field("NoNewPrivs"),
            dumpable=prctl.prctl(pr_get_dumpable),
            pdeathsig=value.value,
            reaper=reaper.value,
            comm=comm,
        )
        return out

    got = run_in_child(child)
    assert got == {
        "nnp_before": False,
        "nnp": True,
        "nnp_status": "1",
        "dumpable": 0,
        "pdeathsig": signal.SIGTERM,
        "reaper": 1,
        "comm": "ociruntime-init",
    }


def test_prctl_rejects() -> None:
    with pytest.raises(ValueError):
        prctl.set_name(b"a\0b")
    with pytest.raises(ValueError):
        prctl.set_pdeathsig(65)
    with pytest.raises(OSError) as info:
        prctl.prctl(0xFFFF, what="BOGUS")
    assert info.value.errno == errno.EINVAL
    assert "prctl(BOGUS)" in str(info.value)


# ---------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("text", "num"),
    [
        ("15", 15),
        ("9", 9),
        ("0", 0),
        ("SIGTERM", 15),
        ("TERM", 15),
        ("term", 15),
        ("sigkill", 9),
        ("SIGCHLD", 17),
        ("CLD", 17),
        ("IOT", 6),
        ("SIGWINCH", 28),
        ("SIGRTMIN", 34),
        ("RTMAX", 64),
        ("SIGRTMIN+3", 37),
        ("rtmin+30", 64),
        ("RTMAX-1", 63),
        ("SIGRTMAX-30", 34),
    ],
)
def test_parse_signal(text: str, num: int) -> None:
    assert signals.parse_signal(text) == num


@pytest.mark.parametrize(
    "text",
    ["", "65", "-1", "+3", "SIGFOO", "SIG", "RTMIN+31", "RTMAX-31", "SIGRTMIN+", "RTMIN+x", "RTMIN-1", "1.5"],
)
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        signals.parse_signal(text)
    assert str(info.value) == f'unknown signal "{text}"'


def test_signal_table_matches_python() -> None:
    for sig in signal.Signals:
        assert signals.SIGNALS[sig.name] == sig.value
    assert signals.signal_name(15) == "SIGTERM"
    assert signals.signal_name(36) == "SIGRTMIN+2"


def test_reset_all_signals_survives_execve() -> None:
    def child() -> str:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGTERM})
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            signals.reset_all_signals()
            os.dup2(w, 1)
            os.execv("/bin/cat", ["cat", "/proc/self/status"])
        os.close(w)
        with os.fdopen(r) as f:
            text = f.read()
        os.waitpid(pid, 0)
        return text

    # Sanity: CPython ignores SIGPIPE/SIGXFSZ, so an unreset exec would show them.
    assert int(status_field("SigIgn"), 16) & (1 << (signal.SIGPIPE - 1))
    text = run_in_child(child)
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if line.startswith("Sig"))
    assert int(fields["SigIgn"], 16) == 0
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigCgt"], 16) == 0


# ---------------------------------------------------------------- fds


def _open_fds() -> list[int]:
    # listdir's own directory fd shows up in the listing; drop entries that are gone afterwards.
    return sorted(fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd))


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("fallback", [False, True])
def test_close_fds_except(monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    def child() -> list[int]:
        if fallback:
            monkeypatch.setattr(fds, "_close_range", lambda *_: False)
        opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(6)]
        os.dup2(opened[0], 200)
        keep = {opened[2], opened[4], 200, 1, REPORT_FD}
        fds.close_fds_except(keep)
        return [fd for fd in _open_fds() if fd >= 3] + [-1] + sorted(k for k in keep if k >= 3)

    got = run_in_child(child)
    split = got.index(-1)
    assert got[:split] == got[split + 1 :]


@pytest.mark.parametrize("fallback", [False, True])
def test_cloexec_all_from(monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    def child() -> list[tuple[int, bool]]:
        if fallback:
            monkeypatch.setattr(fds, "_close_range", lambda *_: False)
        fd = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(fd, True)
        os.dup2(fd, 150, inheritable=True)
        os.set_inheritable(2, True)
        fds.cloexec_all_from(3)
        return [(n, os.get_inheritable(n)) for n in (2, fd, 150)]

    got = run_in_child(child)
    assert got[0] == (2, True)
    assert [inh for _, inh in got[1:]] == [False, False]


def test_set_cloexec_and_dup_to() -> None:
    r, w = os.pipe()
    try:
        fds.set_cloexec(r, False)
        assert os.get_inheritable(r)
        fds.set_cloexec(r, True)
        assert not os.get_inheritable(r)

        def child() -> tuple[bool, bool, bool]:
            fds.dup_to(r, 120)
            same_before = os.get_inheritable(w)
            fds.dup_to(w, w)
            return os.get_inheritable(120), same_before, os.get_inheritable(w)

        assert run_in_child(child) == (True, False, True)
    finally:
        os.close(r)
        os.close(w)
