"""The user process's last steps: one path shared by the container init (create) and exec.

Both children end the same way, in two halves:

``prepare``   privileged, early, may fail visibly: chdir as root, the getcwd check, the
              executable lookup, rlimits, scheduling.  The caller reports "ready" after it.
``become``    the tail that ends in execve.  Its order is what lets a container run under *any*
              seccomp profile that allows execve::

                  close fds            close_range / close     \
                  chown stdio          fchown                   |  before the filter: a strict
                  reset signals        rt_sigaction, sigprocmask |  profile may deny any of them
                  umask, affinity                               /
                  seccomp (without no_new_privs: needs CAP_SYS_ADMIN, so before the user switch)
                  user, groups, caps   setres[ug]id, setgroups, capset, prctl
                  no_new_privs
                  seccomp (with no_new_privs: as late as possible, runc's order)
                  chdir retry          only if the privileged chdir was refused (EACCES/EPERM)
                  startContainer hooks (create only; under the filter, as runc runs them)
                  SIGPIPE reset        only when hooks ran: they need it ignored
                  execve

A notify filter is loaded earlier by the caller (its listener fd must reach the parent while the
channel is open), which is why ``SCMP_ACT_NOTIFY`` may not cover ``write``.
Nothing here imports lazily: the import guard is active in the children.
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.linux import caps, fds, ids, prctl, rlimit, sched, signals
from ociruntime.linux.seccomp import load_filter
from ociruntime.plan import ProcessPlan
from ociruntime.sync import Channel

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class ExecNotFound(Exception):
    """The executable cannot be found; the message follows runc's wording, which podman maps
    (``executable file not found in $PATH`` -> 127, ``no such file or directory`` -> 127)."""


_MAX_SCRIPT_DEPTH = 5  # the kernel follows at most 4 nested #! interpreters (BINPRM_MAX_RECURSION)


def refuse_runtime_exe(exe: bytes, runtime_exe: tuple[int, int]) -> None:
    """Refuse an executable that is, or whose ``#!`` interpreter chain leads to, the interpreter
    running us: executed in the container it would be a host binary the container can reach
    through /proc/<pid>/exe and overwrite (CVE-2019-5736; the test in SECURITY.md is an image
    whose /bin/sh starts with ``#!/proc/self/exe``)."""
    path = exe
    for _ in range(_MAX_SCRIPT_DEPTH):
        try:
            st = os.stat(path)
        except OSError:
            return  # execve reports it
        if (st.st_dev, st.st_ino) == runtime_exe:
            raise OSError(errno.EACCES, "refusing to execute the runtime's own interpreter: "
                          "Permission denied", os.fsdecode(exe))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return
        try:
            head = os.read(fd, 256)
        except OSError:
            return
        finally:
            os.close(fd)
        if not head.startswith(b"#!"):
            return
        words = head[2:].split(b"\n", 1)[0].split()
        if not words:
            return
        path = words[0]


def lookup(proc: ProcessPlan) -> bytes:
    """Resolve args[0] like Go's exec.LookPath with the container's PATH (runc does the same)."""
    name = proc.args[0]
    if b"/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise ExecNotFound(f'exec: "{os.fsdecode(name)}": stat {os.fsdecode(name)}: '
                               f"{os.strerror(e.errno or 0).lower()}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ExecNotFound(f'exec: "{os.fsdecode(name)}": is a directory')
        # Go's findExecutable: no execute bit at all is "permission denied", reported by create
        # (podman maps that text to 126) instead of a failed execve after start.
        if not st.st_mode & 0o111:
            raise ExecNotFound(f'exec: "{os.fsdecode(name)}": permission denied')
        return name
    for d in proc.env_path.split(":"):
        cand = os.path.join(os.fsencode(d or "."), name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(cand, os.X_OK):
            return cand
    raise ExecNotFound(f'exec: "{os.fsdecode(name)}": executable file not found in $PATH')


def env_dict(env: tuple[bytes, ...]) -> dict[bytes, bytes]:
    """``KEY=value`` list -> dict; a later entry wins (runc keeps the last duplicate too)."""
    out: dict[bytes, bytes] = {}
    for e in env:
        k, _, v = e.partition(b"=")
        out[k] = v
    return out


class Prepared:
    """What ``prepare`` found out, for ``become``."""

    __slots__ = ("chdir_pending", "env", "exe")

    def __init__(self, exe: bytes, chdir_pending: bool, env: dict[bytes, bytes]) -> None:
        self.exe = exe
        self.chdir_pending = chdir_pending
        self.env = env


_PASSWD_MAX = 1 << 20


def user_home(uid: int, passwd: str = "/etc/passwd") -> bytes:
    """The home directory of ``uid`` in the container's /etc/passwd, or "/" (runc's getUserHome).

    The file is the image's: opened non-blocking and read only if it is a regular file (a FIFO
    there must not hang us), and only so much of it."""
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b"/"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"/"
        data = os.read(fd, _PASSWD_MAX)
    except OSError:
        return b"/"
    finally:
        os.close(fd)
    for line in data.split(b"\n"):
        fields = line.split(b":")
        if len(fields) >= 7 and fields[2].strip() == str(uid).encode():
            return fields[5]
    return b"/"


def process_env(proc: ProcessPlan) -> dict[bytes, bytes]:
    """process.env as execve gets it: the last of duplicates wins, and HOME comes from the
    container's /etc/passwd when it is unset or empty (runc's prepareEnv)."""
    env = env_dict(proc.env)
    if not env.get(b"HOME"):
        env.pop(b"HOME", None)
        env[b"HOME"] = user_home(proc.uid)
    return env


def _chdir_privileged(cwd: str) -> bool:
    """chdir while still root (runc does): a cwd only root can enter must still work for a
    non-root process.  Returns True when it must be retried as the user (EACCES/EPERM: e.g. a
    root-squashed network filesystem only the user can enter)."""
    try:
        os.chdir(cwd)
    except PermissionError:
        return True
    # getcwd must answer inside our root: an inherited fd cwd would not (CVE-2024-21626).  It is
    # checked here, before any seccomp filter, since a profile may deny getcwd.
    if not os.getcwd().startswith("/"):
        raise OSError(errno.ENOENT, f"cwd {cwd} is outside the container root")
    return False


def prepare(proc: ProcessPlan) -> Prepared:
    """The privileged steps, still root with every capability; raise on any problem."""
    pending = _chdir_privileged(proc.cwd)
    # Limits and scheduling are set while still root: raising rlimits or choosing a realtime
    # policy can need capabilities the user process will not have.
    for res, soft, hard in proc.rlimits:
        rlimit.set_rlimit(res, soft, hard)
    if proc.scheduler:
        s = proc.scheduler
        sched.set_scheduler(s.get("policy", "SCHED_OTHER"), s.get("priority", 0), s.get("nice", 0),
                            s.get("flags") or [], s.get("runtime", 0), s.get("deadline", 0),
                            s.get("period", 0))
    if proc.io_priority:
        sched.set_ioprio(proc.io_priority["class"], proc.io_priority.get("priority", 0))
    if proc.caps is not None:
        _check_caps_grantable(proc.caps)
    exe = lookup(proc)
    refuse_runtime_exe(exe, proc.runtime_exe)
    # In the container's root, before any filter: the image's /etc/passwd names HOME.
    return Prepared(exe, pending, process_env(proc))


def _check_caps_grantable(want: caps.CapSets) -> None:
    """Fail now, while create can still report it, if capset would be refused after start:
    the kernel never grants a permitted capability we do not hold (a host without
    CAP_SYS_RESOURCE, say), nor an inheritable one outside our bounding set."""
    permitted, bounding = caps.own_caps()
    missing = ((want.permitted | want.effective) & ~permitted) | (want.inheritable & ~bounding)
    if missing:
        raise OSError(errno.EPERM, f"capset: {', '.join(caps.cap_names(missing))} cannot be granted: "
                      "Operation not permitted")


def set_user(proc: ProcessPlan) -> None:
    """Switch to the process user keeping only the configured capabilities (runc finalizeNamespace)."""
    if proc.caps is not None:
        # The bounding set can only be lowered while CAP_SETPCAP is effective, i.e. before setuid.
        caps.drop_bounding(proc.caps.bounding)
    # Keep permitted caps across the uid change; the effective set is restored by set_caps.
    caps.keep_caps(True)
    if proc.set_groups:
        ids.set_groups(list(proc.additional_gids))
    ids.set_ids(proc.uid, proc.gid)
    caps.keep_caps(False)
    if proc.caps is not None:
        caps.set_caps(proc.caps)


_DEV_NULL = os.makedev(1, 3)


def reopen_dev_null() -> None:
    """Make stdio that is some /dev/null the container's own /dev/null, opened read-write.

    runc's reOpenDevNull, after pivot_root: an engine that gives the init no stdin (containerd's
    shim, for a CRI container) passes the host's /dev/null, often read-only.  A root without a
    /dev/null device of its own keeps what it was given.
    """
    try:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.fstat(null)
        if not (stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_NULL):
            return
        for fd in (0, 1, 2):
            try:
                cur = os.fstat(fd)
            except OSError:
                continue
            if stat.S_ISCHR(cur.st_mode) and cur.st_rdev == _DEV_NULL:
                os.dup2(null, fd)
    finally:
        os.close(null)


def chown_stdio(uid: int) -> None:
    """Give fds 0-2 to the process user (gid kept), so a non-root process can use its tty.

    runc's fixStdioPermissions: /dev/null is shared by everyone and skipped; a file we may not
    chown (EPERM: not ours in this user ns, EINVAL: unmapped, EROFS) is left as it is.
    """
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_NULL:
            continue
        if st.st_uid == uid:
            continue
        try:
            os.fchown(fd, uid, -1)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise


class Tail:
    """Everything ``become`` needs besides the process plan."""

    __slots__ = ("exe_guard_fd", "hooks", "keep_fds", "seccomp")

    def __init__(self, seccomp: object | None, keep_fds: set[int],
                 hooks: Callable[[], None] | None = None, exe_guard_fd: int = -1) -> None:
        # The compiled filter to load here (None: none, or already loaded because it notifies).
        self.seccomp = seccomp
        # fds besides 0-2 that stay open until execve: the preserved ones (inheritable) and our
        # own close-on-exec reporting fds (channel, log file).
        self.keep_fds = keep_fds
        # startContainer hooks, run under the filter right before execve.
        self.hooks = hooks
        # A host file we still hold open (the --log file): never execve it through /proc/self/fd.
        self.exe_guard_fd = exe_guard_fd


def become(proc: ProcessPlan, prep: Prepared, tail: Tail, step: list[str]) -> None:
    """Turn into the user process.  Never returns; ``step[0]`` names the step for errors."""
    step[0] = "close fds"
    # Close, not merely mark close-on-exec: an args[0] of /proc/self/fd/N must not reach a runtime
    # fd (CVE-2024-21626).  The few kept reporting fds are close-on-exec and checked below.
    fds.close_fds_except(tail.keep_fds)
    step[0] = "chown stdio"
    chown_stdio(proc.uid)
    step[0] = "reset signals"
    # CPython ignores SIGPIPE; hooks write the state to a pipe, so SIGPIPE stays ignored until
    # they ran (then one rt_sigaction, below).
    signals.reset_all_signals(keep_ignored=(signals.SIGPIPE,) if tail.hooks else ())
    if proc.umask is not None:
        os.umask(proc.umask)
    if proc.exec_cpu_affinity and proc.exec_cpu_affinity.get("final"):
        step[0] = "set cpu affinity"
        sched.set_affinity(sched.parse_cpu_list(proc.exec_cpu_affinity["final"]))
    if tail.seccomp is not None and not proc.no_new_privs:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before the user switch.
        step[0] = "load seccomp"
        load_seccomp(tail.seccomp)
    step[0] = "set user"
    set_user(proc)
    if proc.no_new_privs:
        step[0] = "set no_new_privs"
        prctl.set_no_new_privs()
        if tail.seccomp is not None:
            step[0] = "load seccomp"
            load_seccomp(tail.seccomp)
    if prep.chdir_pending:
        step[0] = "chdir"
        os.chdir(proc.cwd)
        if not os.getcwd().startswith("/"):
            raise OSError(errno.ENOENT, f"cwd {proc.cwd} is outside the container root")
    if tail.hooks is not None:
        step[0] = "startContainer hooks"
        tail.hooks()
        step[0] = "reset signals"
        signals.reset_signal(signals.SIGPIPE)
    step[0] = "exec"
    if tail.exe_guard_fd >= 0:
        try:
            same = os.path.samestat(os.stat(prep.exe), os.fstat(tail.exe_guard_fd))
        except OSError:
            same = False
        if same:
            raise OSError(errno.EACCES, "refusing to execute a runtime file", os.fsdecode(prep.exe))
    os.execve(prep.exe, list(proc.args), prep.env)


def load_notify_filter(proc: ProcessPlan, flt: object | None, chan: Channel,
                       step: list[str]) -> object | None:
    """Load a notify filter now, while the channel is open: its listener fd must reach the
    parent, which hands it to the agent (that is why SCMP_ACT_NOTIFY may not cover `write`,
    refused when the profile is compiled).  Returns the filter ``become`` still has to load:
    None once this one is on."""
    if flt is None or not flt.notify:  # type: ignore[attr-defined]
        return flt
    if proc.no_new_privs:
        step[0] = "set no_new_privs"
        prctl.set_no_new_privs()
    step[0] = "load seccomp"
    listener = load_seccomp(flt)
    chan.send("seccomp-listener", fds=[listener])
    os.close(listener)
    return None


def load_seccomp(flt: object) -> int:
    """Install a compiled filter; returns the listener fd (notify filters) or 0."""
    return load_filter(flt.bpf, flt.flags)  # type: ignore[attr-defined]
