"""The init survives any seccomp profile that allows execve (issue: a strict profile killed it).

Each profile denies one call the runtime itself used to make after loading the filter; the
container must run with the profile in force, and the denied call must fail *inside* it with
the configured errno (``checker try NAME`` exits with the errno of one raw call).
"""

from __future__ import annotations

import json

import pytest
from conftest import new_id

pytestmark = pytest.mark.root

EACCES = 13
DENIED = ["close_range", "fcntl", "getcwd", "rt_sigaction", "rt_sigprocmask", "write", "openat", "close"]

# An allow-list in the shape of the OCI runtime-tools generator's default profile (errno by
# default, no close_range): what a static checker and the runtime's own tail need, no more.
ALLOW = """accept accept4 access arch_prctl bind brk capget capset chdir chmod chown clock_getres
clock_gettime clock_nanosleep clone clone3 close connect dup dup2 dup3 epoll_create1 epoll_ctl
epoll_pwait epoll_wait eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fchdir fchmod fchmodat fchown fchownat fcntl fdatasync flock fork fstat fstatfs fsync ftruncate
futex getcwd getdents64 getegid geteuid getgid getgroups getitimer getpgid getpgrp getpid
getppid getpriority getrandom getresgid getresuid getrlimit getrusage getsid getsockname
getsockopt gettid gettimeofday getuid ioctl ioprio_get kill lseek lstat madvise memfd_create
mkdirat mmap mprotect mremap munmap nanosleep newfstatat open openat pipe pipe2 poll ppoll
prctl pread64 prlimit64 pselect6 pwrite64 read readlink readlinkat readv recvfrom recvmsg
rename renameat rseq rt_sigaction rt_sigprocmask rt_sigreturn sched_getaffinity sched_yield
select sendmsg sendto set_robust_list set_tid_address setgid setgroups setitimer setpgid
setresgid setresuid setsid setsockopt setuid shutdown sigaltstack socket socketpair stat statfs
statx symlinkat sysinfo tgkill time tkill umask uname unlinkat vfork wait4 write writev""".split()


def run_with(rt, bundle, profile: dict, args: list[str], nnp: bool = True):
    def mutate(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = profile
        cfg["process"]["noNewPrivileges"] = nnp

    return rt("run", "--bundle", str(bundle(args, mutate)), new_id())


@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
@pytest.mark.parametrize("name", DENIED)
def test_container_runs_with_the_call_denied(rt, bundle, name: str, nnp: bool) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}]}
    p = run_with(rt, bundle, profile, ["checker", "try", name], nnp)
    # the container ran (no init error on stderr) and the call failed inside with our errno
    assert p.stderr == b"", p.stderr
    assert p.returncode == EACCES, (p.returncode, p.stdout)


@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
def test_allow_list_profile_without_close_range(rt, bundle, nnp: bool) -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               "syscalls": [{"names": ALLOW, "action": "SCMP_ACT_ALLOW"}]}
    p = run_with(rt, bundle, profile, ["checker", "report"], nnp)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["status"]["Seccomp"] == "2"
    # close_range is not in the list: denied (EPERM), or ENOSYS where newer than every listed call
    p = run_with(rt, bundle, profile, ["checker", "try", "close_range"], nnp)
    assert p.returncode in (1, 38), p.stderr


def test_denied_execve_is_one_clear_line(rt, bundle) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_ERRNO"}]}
    p = run_with(rt, bundle, profile, ["checker", "report"])
    err = p.stderr.decode()
    assert p.returncode != 0
    assert err.count("\n") == 1 and "exec" in err and "operation not permitted" in err, err
    # the --log file gets it as a JSON error line too: the caller may not see our stderr
    log = [json.loads(line) for line in rt.log.read_text().splitlines()]
    errors = [e for e in log if e["level"] == "error"]
    assert errors and "operation not permitted" in errors[-1]["msg"]


def test_start_container_hooks_run_under_the_filter(rt, bundle) -> None:
    """runc loads the filter before startContainer hooks, with no_new_privs too."""

    def mutate(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}]}
        cfg["process"]["noNewPrivileges"] = True
        cfg["root"]["readonly"] = False
        cfg["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
            "sh", "-c", "mkdir /tmp/hookdir 2>/dev/null; echo $? > /tmp/hook.rc"]}]}

    b = bundle(["true"], mutate)
    p = rt("run", "--bundle", str(b), new_id())
    assert p.returncode == 0, p.stderr
    assert (b / "rootfs" / "tmp" / "hook.rc").read_text().strip() != "0"
    assert not (b / "rootfs" / "tmp" / "hookdir").exists()


class _Agent:
    """A seccomp agent at listenerPath: records what each connection brings, closes the fd
    (a notified call then fails with ENOSYS, the kernel's answer without a listener)."""

    def __init__(self, path: str) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.got: list[tuple[dict, str]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import array
        import os
        import socket

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                fds = array.array("i")
                data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
                for _level, _type, cdata in anc:
                    fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
                while True:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                kind = os.readlink(f"/proc/self/fd/{fds[0]}") if fds else ""
                for fd in fds:
                    os.close(fd)
                self.got.append((json.loads(data), kind))

    def close(self) -> None:
        self.sock.close()


def test_exec_hands_its_notify_listener_to_the_agent(rt, bundle, tmp_path) -> None:
    agent = _Agent(str(tmp_path / "agent.sock"))

    def mutate(cfg: dict) -> None:
        cfg["root"]["readonly"] = False
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "listenerPath": str(tmp_path / "agent.sock"),
                                   "listenerMetadata": "meta",
                                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}

    cid = new_id()
    try:
        rt("run", "-d", "--bundle", str(bundle(["sleep", "1000"], mutate)), cid, check=True)
        p = rt("exec", cid, "mkdir", "/tmp/x")
        assert p.returncode != 0 and b"not implemented" in p.stderr.lower(), p.stderr
        assert len(agent.got) == 2  # create's init, then the exec'd process: one listener each
        for doc, kind in agent.got:
            assert kind == "anon_inode:seccomp notify"
            assert doc["fds"] == ["seccompFd"] and doc["metadata"] == "meta"
            assert doc["state"]["id"] == cid
    finally:
        rt("delete", "--force", cid)
        agent.close()
