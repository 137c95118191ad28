"""Compute-before-fork: turn a validated config into the immutable plan the children execute.

Everything the forked children need is decided here, in the parent, where errors are cheap and
clear: namespace flags and paths, id maps, the rootfs plan, capabilities as bit masks, rlimits as
numbers, argv/env as bytes, compiled seccomp BPF.  The children never read config.json.
"""

from __future__ import annotations

import os

from ociruntime import record
from ociruntime.errors import ConfigError
from ociruntime.hooks import Hook, parse_hooks
from ociruntime.linux import caps as capslib
from ociruntime.linux.ns import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, JOIN_ORDER, NAMESPACES, format_id_map
from ociruntime.linux.rlimit import RLIMITS
from ociruntime.record import dataclass, field
from ociruntime.rootfs.plan import RootfsPlan, build_plan

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class ProcessPlan:
    """The user process: what execve gets, and the credentials and limits it runs with."""

    args: tuple[bytes, ...]
    env: tuple[bytes, ...]
    env_path: str  # PATH from process.env, for the in-container executable lookup
    cwd: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    umask: int | None
    caps: capslib.CapSets | None
    no_new_privs: bool
    rlimits: tuple[tuple[int, int, int], ...]
    oom_score_adj: int | None
    terminal: bool
    console_size: tuple[int, int] | None
    scheduler: dict | None
    io_priority: dict | None
    exec_cpu_affinity: dict | None
    # (st_dev, st_ino) of the interpreter running the runtime: the container must never get to
    # execute it (CVE-2019-5736 for a Python runtime: `/proc/self/exe` or `#!/proc/self/exe`).
    runtime_exe: tuple[int, int] = (0, 0)
    # False in a user namespace whose setgroups is "deny" (a rootless container mapping only the
    # caller's gid): setgroups(2) is refused there, and the caller's groups stay (runc's rule).
    set_groups: bool = True


@dataclass(frozen=True)
class InitPlan:
    container_id: str
    bundle: str
    state_dir: str
    # Namespaces: flags to unshare (never including the user ns, done first), paths to join.
    unshare_flags: int
    new_userns: bool
    join: tuple[tuple[str, str], ...]
    uid_map: bytes
    gid_map: bytes
    time_offsets: dict
    new_netns: bool
    new_pidns: bool
    new_mntns: bool
    rootfs: RootfsPlan
    hostname: str | None
    domainname: str | None
    sysctls: tuple[tuple[str, str], ...]
    process: ProcessPlan
    personality: dict | None
    seccomp: object | None  # ociruntime.seccomp.compile.CompiledFilter
    hooks: dict[str, tuple[Hook, ...]]
    new_keyring: bool
    preserve_fds: int
    annotations: dict[str, str] = field(default_factory=dict)
    # `run` in the foreground is its own console client: no "\r" added to the output (runc).
    clear_onlcr: bool = False

    @property
    def parent_hooks(self) -> bool:
        """True when the init must pause for prestart/createRuntime hooks run by the parent."""
        return bool(self.hooks.get("prestart") or self.hooks.get("createRuntime"))


@dataclass(frozen=True)
class ExecPlan:
    """``exec``: a new process in a running container.  Its tail is the init's (ProcessPlan and
    the same seccomp filter); the rest says what to join instead of what to create."""

    container_id: str
    init_pid: int
    process: ProcessPlan
    seccomp: object | None  # the container's compiled filter (same cache as create)
    cgroup_dirs: tuple[str, ...]  # every hierarchy's directory to join (or --cgroup's sub-cgroups)
    preserve_fds: int
    new_keyring: bool
    state: dict  # the container's OCI state, for a seccomp notify agent
    clear_onlcr: bool = False  # foreground `exec -t`: we are the console client (runc)
    sub_cgroup: bool = False  # --cgroup named a sub-cgroup (then no fallback to the init's cgroup)


def _encode_all(items: list[str], what: str) -> tuple[bytes, ...]:
    out = []
    for i, s in enumerate(items):
        b = s.encode("utf-8", "surrogateescape")
        if b"\0" in b:
            raise ConfigError(f"{what}[{i}]: contains a NUL byte")
        out.append(b)
    return tuple(out)


def _namespaces(linux: dict) -> tuple[int, bool, tuple[tuple[str, str], ...]]:
    flags, new_user, join = 0, False, {}
    for ns in linux.get("namespaces") or []:
        t = ns["type"]
        if ns.get("path"):
            join[t] = ns["path"]
        elif t == "user":
            new_user = True
        else:
            flags |= NAMESPACES[t][0]
    ordered = tuple((t, join[t]) for t in JOIN_ORDER if t in join)
    return flags, new_user, ordered


def _runtime_exe() -> tuple[int, int]:
    st = os.stat("/proc/self/exe")
    return st.st_dev, st.st_ino


def process_plan(proc: dict, warn: Callable[[str], None], debug: Callable[[str], None]) -> ProcessPlan:
    """A validated spec ``process`` object -> the plan both create and exec finish with."""
    user = proc.get("user") or {}
    env = list(proc.get("env") or [])
    env_path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), "")
    rlimits = []
    for r in proc.get("rlimits") or []:
        if r["type"] not in RLIMITS:
            raise ConfigError(f'process.rlimits: unknown rlimit "{r["type"]}"')
        rlimits.append((RLIMITS[r["type"]], int(r["soft"]), int(r["hard"])))
    caps = capslib.caps_from_spec(proc["capabilities"], warn) if "capabilities" in proc else None
    if caps is not None:
        # The kernel refuses an ambient cap that is not both permitted and inheritable; runc logs
        # and goes on (runc spec's default config asks for exactly that), so do we.
        raisable = caps.ambient & caps.permitted & caps.inheritable
        dropped = caps.ambient & ~raisable
        if dropped:
            debug(f"can't raise ambient capabilities {capslib.cap_names(dropped)}: "
                 "not in both the permitted and inheritable sets")
            caps = record.replace(caps, ambient=raisable)
    size = proc.get("consoleSize")
    return ProcessPlan(
        args=_encode_all(proc["args"], "process.args"),
        env=_encode_all(env, "process.env"),
        env_path=env_path,
        cwd=proc.get("cwd") or "/",
        uid=int(user.get("uid", 0)),
        gid=int(user.get("gid", 0)),
        additional_gids=tuple(int(g) for g in user.get("additionalGids") or []),
        umask=user.get("umask"),
        caps=caps,
        no_new_privs=bool(proc.get("noNewPrivileges", False)),
        rlimits=tuple(rlimits),
        oom_score_adj=proc.get("oomScoreAdj"),
        terminal=bool(proc.get("terminal", False)),
        console_size=(int(size["height"]), int(size["width"])) if size else None,
        scheduler=proc.get("scheduler"),
        io_priority=proc.get("ioPriority"),
        exec_cpu_affinity=proc.get("execCPUAffinity"),
        runtime_exe=_runtime_exe(),
    )


def build(config: dict, *, container_id: str, bundle: str, state_dir: str, no_pivot: bool,
          no_new_keyring: bool, preserve_fds: int, cgroup_paths: dict[str, str], cgroup_layout: str,
          cgroup_data: dict[str, str] | None = None,
          seccomp_cache: str | None, warn: Callable[[str], None],
          debug: Callable[[str], None] | None = None, clear_onlcr: bool = False) -> InitPlan:
    """Build the plan; raise ConfigError for anything the children could not do."""
    linux = config.get("linux") or {}
    flags, new_user, join = _namespaces(linux)
    types = {ns["type"] for ns in linux.get("namespaces") or []}
    if "mount" not in types and (config.get("root") or {}).get("readonly"):
        # Without a private mount namespace "/" is the host's mount: runc skips the read-only
        # remount there (finalizeRootfs), so do we, but say so.
        warn("root.readonly is ignored without a private mount namespace")
    seccomp = None
    if linux.get("seccomp"):
        from ociruntime.seccomp.compile import compile_profile

        seccomp = compile_profile(linux["seccomp"], warn, cache_dir=seccomp_cache)
    memory = (linux.get("resources") or {}).get("memory") or {}
    for key in ("kernel", "kernelTCP"):
        if memory.get(key) is not None:
            # Kernel memory limits are gone from cgroup v2 and deprecated in v1 (runc ignores
            # them too): accepted, never written, and said so.
            warn(f"linux.resources.memory.{key} is deprecated and ignored")
    sysctls = []
    for key, value in (linux.get("sysctl") or {}).items():
        sysctls.append(("sys/" + key.replace(".", "/"), str(value)))
    return InitPlan(
        container_id=container_id,
        bundle=bundle,
        state_dir=state_dir,
        unshare_flags=flags,
        new_userns=new_user,
        join=join,
        uid_map=format_id_map(linux.get("uidMappings") or []),
        gid_map=format_id_map(linux.get("gidMappings") or []),
        time_offsets=linux.get("timeOffsets") or {},
        new_netns=bool(flags & CLONE_NEWNET),
        new_pidns=bool(flags & CLONE_NEWPID),
        new_mntns=bool(flags & CLONE_NEWNS),
        rootfs=build_plan(config, bundle, no_pivot=no_pivot, cgroup_paths=cgroup_paths,
                          cgroup_layout=cgroup_layout, cgroup_data=cgroup_data),
        hostname=config.get("hostname"),
        domainname=config.get("domainname"),
        sysctls=tuple(sysctls),
        process=process_plan(config["process"], warn, debug or (lambda _m: None)),
        personality=linux.get("personality"),
        seccomp=seccomp,
        hooks=parse_hooks(config),
        new_keyring=not no_new_keyring,
        preserve_fds=preserve_fds,
        annotations=dict(config.get("annotations") or {}),
        clear_onlcr=clear_onlcr,
    )
