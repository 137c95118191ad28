"""Fault injection: SIGKILL a command's whole process group at a random moment, then check that
``delete --force`` leaves nothing of the container and that its id can be used again.

For each of create, start, exec, delete and update, ``TRIALS`` trials: the command runs in a
session of its own (``start_new_session``), is killed (``killpg``, SIGKILL) after a delay drawn
from ``random.Random(SEED)`` over the command's measured duration (trial 0 kills at once, trial
1 after it finished), then ``delete --force ID`` must succeed and leave no state directory, no
cgroup directory named ID in any hierarchy, no process whose command line holds the id or the
trial's marker (a unique ``sleep`` argument), no mount beneath the bundle's rootfs in our mount
namespace; then ``create`` of the same id must work (and be cleaned up the same way).

Then parallel churn (100 containers, 8 at a time) and races on one id.

Reproduce a failure with the seed its message names: ``CRASH_SEED=<seed> pytest ...``;
``CRASH_TRIALS`` changes the number of trials per command.  Every failure message names the
seed, command, trial, delay and variant.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BundleFactory, Runtime, runtime_cmd

pytestmark = pytest.mark.root

SEED = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(1, 2**31))
TRIALS = int(os.environ.get("CRASH_TRIALS") or 40)
CGROUP_ROOT = Path("/sys/fs/cgroup")


_CONFIG: list[pytest.Config] = []


def say(line: str) -> None:
    """Print past output capturing, so it shows also when everything passes."""
    capture = _CONFIG[0].pluginmanager.get_plugin("capturemanager") if _CONFIG else None
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(line, flush=True)
    else:
        print(line, flush=True)


@pytest.fixture(scope="module", autouse=True)
def announce_seed(request: pytest.FixtureRequest) -> Iterator[None]:
    _CONFIG[:] = [request.config]
    say(f"\ntest_crash: CRASH_SEED={SEED} CRASH_TRIALS={TRIALS}")
    yield


def report(what: str, typical: float, outcomes: Counter[str]) -> None:
    """Where the kills landed (what each left behind): the trials' coverage, for the log."""
    say(f"\ntest_crash: {what}: typical {typical * 1000:.0f} ms; after the kill: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))


def left_behind(rt: Runtime, cid: str) -> str:
    """What a killed create left: nothing, a bare directory, the intent (with the init's pid or
    not yet), or a whole container."""
    d = Path(rt.root) / cid
    if not d.exists():
        return "nothing"
    names = set(os.listdir(d))
    if "state.json" in names:
        return "state.json"
    if "intent.json" not in names:
        return "bare dir"
    return "intent+pid" if json.loads((d / "intent.json").read_text())["pid"] else "intent"


# ---- helpers ----------------------------------------------------------------------------------

def unique(prefix: str = "crash") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def marker() -> str:
    """A unique, valid busybox sleep argument: seconds with a random fraction."""
    return f"3600.{random.SystemRandom().randrange(10**8, 10**9)}"


def no_mntns(cfg: dict) -> None:
    """No mount namespace: the container mounts into ours, and delete must unmount it all."""
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    cfg["linux"].pop("maskedPaths", None)
    cfg["linux"].pop("readonlyPaths", None)


def set_args(bundle: Path, args: list[str]) -> None:
    path = bundle / "config.json"
    cfg = json.loads(path.read_text())
    cfg["process"]["args"] = args
    path.write_text(json.dumps(cfg))


def cgroup_dirs_named(name: str) -> list[str]:
    out = []
    for top in CGROUP_ROOT.iterdir():
        if not top.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(top):
            out.extend(os.path.join(dirpath, d) for d in dirnames if d == name)
    return out


def processes_with(needles: list[str]) -> list[str]:
    found = []
    wanted = [n.encode() for n in needles]
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if any(w in cmdline for w in wanted):
            text = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{name}: {text[:160]}")
    return found


def mounts_beneath(rootfs: Path) -> list[str]:
    top = str(rootfs).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(top)]


def leftovers(rt: Runtime, cid: str, needles: list[str], rootfs: Path) -> list[str]:
    out = []
    if (Path(rt.root) / cid).exists():
        out.append(f"state dir {Path(rt.root) / cid}: {sorted(os.listdir(Path(rt.root) / cid))}")
    out += [f"cgroup {d}" for d in cgroup_dirs_named(cid)]
    out += [f"process {p}" for p in processes_with([cid, *needles])]
    out += [f"mount {m}" for m in mounts_beneath(rootfs)]
    return out


class Cmd:
    """A runtime command in a session (and process group) of its own.

    Its stderr goes to a file, not a pipe: a container's processes inherit it, so a pipe would
    not reach EOF while they live."""

    def __init__(self, rt: Runtime, *args: str) -> None:
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([*runtime_cmd(), "--root", str(rt.root), *args], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        rc = self.p.wait(timeout)
        self.err.seek(0)
        text = self.err.read().decode(errors="replace")
        self.err.close()
        return rc, text

    def kill_after(self, delay: float | None) -> tuple[int, str]:
        """SIGKILL the process group after ``delay`` seconds (None: once the command finished)."""
        if delay is None:
            self.p.wait(60)
        elif delay > 0:
            time.sleep(delay)
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone: the command finished and left nothing in it
        return self.wait()


def measure(run: Callable[[], None], prepare: Callable[[], None] | None = None, n: int = 3) -> float:
    """Median wall time of ``run`` (``prepare`` untimed before each)."""
    times = []
    for _ in range(n):
        if prepare is not None:
            prepare()
        t = time.monotonic()
        run()
        times.append(time.monotonic() - t)
    return sorted(times)[len(times) // 2]


def delays(rng: random.Random, typical: float, n: int) -> list[float | None]:
    """0 and "after completion" first, then uniform over 1.25 times the typical duration."""
    return [0.0, None] + [round(rng.uniform(0, typical * 1.25), 4) for _ in range(n - 2)]


def timed(rt: Runtime, *args: str) -> None:
    rc, err = Cmd(rt, *args).wait()
    assert rc == 0, f"{args}: {err}"


class Trial:
    """One container id and its markers; ``force_delete_and_check`` asserts nothing of it is left."""

    def __init__(self, rt: Runtime, bundle: Path, what: str) -> None:
        self.rt = rt
        self.bundle = bundle
        self.cid = unique()
        self.needles = [marker()]
        self.what = what

    def fail(self, msg: str) -> str:
        return f"[seed={SEED} {self.what} id={self.cid}] {msg}"

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = self.rt(*args, log_json=False)
        if ok:
            assert p.returncode == 0, self.fail(f"{' '.join(args)}: {p.stderr.decode().strip()}")
        return p

    def create(self) -> None:
        set_args(self.bundle, ["sleep", self.needles[0]])
        self.run("create", "--bundle", str(self.bundle), self.cid)

    def force_delete_and_check(self) -> None:
        self.run("delete", "--force", self.cid)
        left = leftovers(self.rt, self.cid, self.needles, self.bundle / "rootfs")
        assert left == [], self.fail(f"left after delete --force: {left}")

    def state_is_sane(self) -> dict | None:
        """`state` works (valid JSON) or says the container does not exist; never anything else."""
        p = self.run("state", self.cid, ok=False)
        if p.returncode == 0:
            return json.loads(p.stdout)
        assert p.stderr.decode().strip() == "container does not exist", self.fail(
            f"state: {p.returncode} {p.stderr.decode().strip()}")
        return None

    def reuse(self) -> None:
        """The same id again: create works, and its delete leaves nothing either."""
        self.create()
        st = self.rt.state(self.cid)
        assert st["status"] == "created", self.fail(f"re-created: {st}")
        self.force_delete_and_check()


# ---- one test per command ---------------------------------------------------------------------

def test_crash_create(rt: Runtime, bundle: BundleFactory) -> None:
    rng = random.Random(SEED ^ 0xC1)
    bundles = {"mntns": bundle(["true"]), "no-mntns": bundle(["true"], no_mntns)}
    probe = bundles["mntns"]
    ids: list[str] = []

    def once() -> None:
        ids.append(unique())
        timed(rt, "create", "--bundle", str(probe), ids[-1])

    typical = measure(once)
    for cid in ids:
        rt("delete", "--force", cid, check=True)
    outcomes: Counter[str] = Counter()
    for i, delay in enumerate(delays(rng, typical, TRIALS)):
        variant = rng.choice(sorted(bundles))
        t = Trial(rt, bundles[variant],
                  f"create trial={i} delay={delay} variant={variant} typical={typical:.3f}")
        set_args(t.bundle, ["sleep", t.needles[0]])
        rc, _ = Cmd(rt, "create", "--bundle", str(t.bundle), t.cid).kill_after(delay)
        if delay is None:
            assert rc == 0, t.fail("create did not succeed when left alone")
        outcomes[left_behind(rt, t.cid)] += 1
        state = t.state_is_sane()
        assert state is None or state["status"] == "created", t.fail(f"state after kill: {state}")
        t.force_delete_and_check()
        t.reuse()
    report("create", typical, outcomes)


def test_crash_start(rt: Runtime, bundle: BundleFactory) -> None:
    rng = random.Random(SEED ^ 0x5A)
    b = bundle(["true"])
    probes: list[Trial] = []

    def prepare() -> None:
        probes.append(Trial(rt, b, "start probe"))
        probes[-1].create()

    typical = measure(lambda: timed(rt, "start", probes[-1].cid), prepare)
    for probe in probes:
        probe.force_delete_and_check()
    outcomes: Counter[str] = Counter()
    for i, delay in enumerate(delays(rng, typical, TRIALS)):
        t = Trial(rt, b, f"start trial={i} delay={delay} typical={typical:.3f}")
        t.create()
        Cmd(rt, "start", t.cid).kill_after(delay)
        # The user process runs once it shows its marker; after that state must say so (an exec
        # cannot be undone), even when start was killed before it recorded the start.
        running = bool(processes_with(t.needles))
        d = Path(rt.root) / t.cid
        fifo, started = (d / "exec.fifo").exists(), json.loads((d / "state.json").read_text())["started"]
        st = t.state_is_sane()
        assert st is not None and st["status"] in ("created", "running"), t.fail(f"state: {st}")
        if running:
            assert st["status"] == "running", t.fail(f"user process runs, state says {st}")
        # A second start finishes the job, or says it is done already.
        p = t.run("start", t.cid, ok=False)
        assert p.returncode == 0 or b"already running" in p.stderr, t.fail(
            f"second start: {p.stderr.decode().strip()}")
        outcomes["recorded" if started else "fifo gone, not recorded" if not fifo
                 else "exec'd, fifo left" if running else "fifo left"] += 1
        outcomes["second start ok" if p.returncode == 0 else "second start: already running"] += 1
        deadline = time.monotonic() + 10
        while not processes_with(t.needles) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processes_with(t.needles), t.fail("the user process never ran")
        assert t.rt.state(t.cid)["status"] == "running", t.fail("not running after the second start")
        t.force_delete_and_check()
        t.reuse()
    report("start", typical, outcomes)


def _exec_trial(rt: Runtime, b: Path, i: int, delay: float | None, detach: bool, typical: float,
                outcomes: Counter[str]) -> None:
    t = Trial(rt, b, f"exec trial={i} delay={delay} detach={detach} typical={typical:.3f}")
    t.create()
    t.run("start", t.cid)
    t.needles.append(marker())
    args = ["exec", "-d"] if detach else ["exec"]
    rc, _ = Cmd(rt, *args, t.cid, "sleep", t.needles[-1]).kill_after(delay)
    if delay is None and detach:
        assert rc == 0, t.fail("exec -d did not succeed when left alone")
    outcomes["process runs" if processes_with(t.needles[-1:]) else "no process"] += 1
    # A killed exec must not harm the container: it runs, and takes further execs.
    st = t.state_is_sane()
    assert st is not None and st["status"] == "running", t.fail(f"state after killed exec: {st}")
    t.run("exec", t.cid, "true")
    t.force_delete_and_check()
    t.reuse()


def test_crash_exec(rt: Runtime, bundle: BundleFactory) -> None:
    rng = random.Random(SEED ^ 0xE7)
    # A few bundles, so trials can run side by side (a trial rewrites its bundle's args).
    workers = 4
    bundles = [bundle(["true"]) for _ in range(workers)]
    setup = Trial(rt, bundles[0], "exec probe")
    setup.create()
    setup.run("start", setup.cid)

    def execs() -> None:
        # As many at once as trials run side by side: their duration under that load.
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: timed(rt, "exec", "-d", setup.cid, "sleep", setup.needles[0]),
                          range(workers)))

    typical = measure(execs)
    setup.force_delete_and_check()
    # Foreground or detached; "after completion" only detached (a foreground exec of sleep
    # completes when the container is deleted).
    plan = [(i, d, rng.random() < 0.5 or d is None) for i, d in enumerate(delays(rng, typical, TRIALS))]
    # Each trial's delete waits ~1 s for the host's pid 1 to reap the orphaned exec process
    # (the init of a pid namespace exits only once its members are reaped): run them 4 at once.
    outcomes: Counter[str] = Counter()
    with ThreadPoolExecutor(workers) as pool:
        futures = []
        for n, (i, d, detach) in enumerate(plan):
            futures.append(pool.submit(_exec_trial, rt, bundles[n % workers], i, d, detach, typical,
                                       outcomes))
            if len(futures) % workers == 0:
                for f in futures[-workers:]:
                    f.result()
        for f in futures:
            f.result()
    report("exec", typical, outcomes)


def test_crash_delete(rt: Runtime, bundle: BundleFactory) -> None:
    rng = random.Random(SEED ^ 0xDE)
    bundles = {"mntns": bundle(["true"]), "no-mntns": bundle(["true"], no_mntns)}
    probes: list[Trial] = []

    def prepare() -> None:
        probes.append(Trial(rt, bundles["mntns"], "delete probe"))
        probes[-1].create()
        probes[-1].run("start", probes[-1].cid)

    typical = measure(lambda: timed(rt, "delete", "--force", probes[-1].cid), prepare)
    outcomes: Counter[str] = Counter()
    for i, delay in enumerate(delays(rng, typical, TRIALS)):
        variant = rng.choice(sorted(bundles))
        started = rng.random() < 0.5
        # A created container may be deleted without --force; a running one needs it.
        force = started or rng.random() < 0.5
        t = Trial(rt, bundles[variant], f"delete trial={i} delay={delay} variant={variant} "
                                        f"started={started} force={force} typical={typical:.3f}")
        t.create()
        if started:
            t.run("start", t.cid)
        rc, _ = Cmd(rt, "delete", *(["--force"] if force else []), t.cid).kill_after(delay)
        if delay is None:
            assert rc == 0, t.fail("delete did not succeed when left alone")
        outcomes[left_behind(rt, t.cid)] += 1
        t.state_is_sane()
        t.force_delete_and_check()
        t.reuse()
    report("delete", typical, outcomes)


def test_crash_update(rt: Runtime, bundle: BundleFactory, tmp_path: Path) -> None:
    rng = random.Random(SEED ^ 0x0D)
    b = bundle(["true"])
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"memory": {"limit": 96 << 20}, "pids": {"limit": 321},
                                     "cpu": {"shares": 512}}))
    updates = [["update", "--memory", "64m", "--pids-limit", "123"],
               ["update", "--resources", str(resources)]]
    setup = Trial(rt, b, "update probe")
    setup.create()
    setup.run("start", setup.cid)
    typical = measure(lambda: timed(rt, *updates[0], setup.cid))
    setup.force_delete_and_check()
    outcomes: Counter[str] = Counter()
    for i, delay in enumerate(delays(rng, typical, TRIALS)):
        which = rng.randrange(len(updates))
        t = Trial(rt, b, f"update trial={i} delay={delay} variant={which} typical={typical:.3f}")
        t.create()
        t.run("start", t.cid)
        rc, _ = Cmd(rt, *updates[which], t.cid).kill_after(delay)
        if delay is None:
            assert rc == 0, t.fail("update did not succeed when left alone")
        saved = (Path(rt.root) / t.cid / "resources.json").exists()
        outcomes["resources.json saved" if saved else "resources.json not saved"] += 1
        st = t.state_is_sane()
        assert st is not None and st["status"] == "running", t.fail(f"state after killed update: {st}")
        # resources.json (the merge base of later updates) is whole: the next update works.
        t.run("update", "--memory", "80m", t.cid)
        t.force_delete_and_check()
        t.reuse()
    report("update", typical, outcomes)


# ---- parallel churn ---------------------------------------------------------------------------

def test_parallel_churn(rt: Runtime, bundle: BundleFactory) -> None:
    """100 containers, 8 at a time, through create/start/wait/delete: no failure, no leftover."""
    b = bundle(["sleep", "0.05"])
    ids = [unique("churn") for _ in range(100)]

    def one(cid: str) -> str | None:
        for args in (("create", "--bundle", str(b), cid), ("start", cid)):
            p = rt(*args, log_json=False)
            if p.returncode != 0:
                return f"{cid}: {args[0]}: {p.stderr.decode().strip()}"
        deadline = time.monotonic() + 20
        while True:
            p = rt("state", cid, log_json=False)
            if p.returncode != 0:
                return f"{cid}: state: {p.stderr.decode().strip()}"
            if json.loads(p.stdout)["status"] == "stopped":
                break
            if time.monotonic() > deadline:
                return f"{cid}: still {json.loads(p.stdout)['status']} after 20 s"
            time.sleep(0.02)
        p = rt("delete", cid, log_json=False)
        if p.returncode != 0:
            return f"{cid}: delete: {p.stderr.decode().strip()}"
        return None

    with ThreadPoolExecutor(8) as pool:
        failures = [f for f in pool.map(one, ids) if f]
    assert failures == []
    left = [x for cid in ids for x in leftovers(rt, cid, [], b / "rootfs")]
    assert left == []


# ---- races on one id --------------------------------------------------------------------------

RACES = 12


def _settle(t: Trial) -> None:
    t.state_is_sane()
    t.force_delete_and_check()


def test_two_creates_of_one_id(rt: Runtime, bundle: BundleFactory) -> None:
    rng = random.Random(SEED ^ 0x22)
    b = bundle(["true"])
    for i in range(RACES):
        t = Trial(rt, b, f"two creates race={i}")
        set_args(b, ["sleep", t.needles[0]])
        ps = [Cmd(rt, "create", "--bundle", str(b), t.cid)]
        time.sleep(rng.uniform(0, 0.03))
        ps.append(Cmd(rt, "create", "--bundle", str(b), t.cid))
        results = [(rc, err.strip()) for rc, err in (c.wait() for c in ps)]
        winners = [r for r in results if r[0] == 0]
        losers = [r for r in results if r[0] != 0]
        assert len(winners) == 1, t.fail(f"{results}")
        assert losers[0][1] == f'container with id "{t.cid}" already exists', t.fail(f"{results}")
        # The loser broke nothing of the winner's container.
        assert t.rt.state(t.cid)["status"] == "created", t.fail("winner not created")
        t.run("start", t.cid)
        assert t.rt.state(t.cid)["status"] == "running", t.fail("winner not running")
        t.force_delete_and_check()


@pytest.mark.parametrize("force", [False, True], ids=["delete", "delete-force"])
def test_start_racing_delete(rt: Runtime, bundle: BundleFactory, force: bool) -> None:
    rng = random.Random(SEED ^ (0x51 + force))
    b = bundle(["true"])
    for i in range(RACES):
        t = Trial(rt, b, f"start vs delete force={force} race={i}")
        t.create()
        first, second = ["start", t.cid], ["delete", *(["--force"] if force else []), t.cid]
        if rng.random() < 0.5:
            first, second = second, first
        ps = {first[0]: Cmd(rt, *first)}
        time.sleep(rng.uniform(0, 0.05))
        ps[second[0]] = Cmd(rt, *second)
        (start_rc, start_err), (delete_rc, delete_err) = ps["start"].wait(), ps["delete"].wait()
        # They serialize on the directory lock: start first (then a plain delete finds it
        # running), or delete first (then start finds no container).
        results = t.fail(f"start: {start_rc} {start_err!r}, delete: {delete_rc} {delete_err!r}")
        if start_rc == 0:
            assert delete_rc == 0 if force else (delete_rc == 1 and delete_err == (
                f"cannot delete container {t.cid} that is not stopped: running\n")), results
        else:
            assert (start_rc, start_err) == (1, "container does not exist\n") and delete_rc == 0, results
        _settle(t)


def test_kill_during_delete(rt: Runtime, bundle: BundleFactory) -> None:
    rng = random.Random(SEED ^ 0x4B)
    b = bundle(["true"])
    for i in range(RACES):
        t = Trial(rt, b, f"kill vs delete race={i}")
        t.create()
        t.run("start", t.cid)
        ps = [Cmd(rt, "delete", "--force", t.cid)]
        time.sleep(rng.uniform(0, 0.05))
        ps.append(Cmd(rt, "kill", t.cid, "KILL"))
        (rc, err), (_, kill_err) = (c.wait() for c in ps)
        for text in (err, kill_err):
            assert "internal error" not in text and text.count("\n") <= 1, t.fail(text)
        assert rc == 0, t.fail(f"delete --force failed: {err}")
        _settle(t)


# ---- what a killed command leaves, made on purpose --------------------------------------------

def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("variant", ["mntns", "no-mntns"])
def test_create_killed_in_its_hook(rt: Runtime, bundle: BundleFactory, tmp_path: Path, variant: str) -> None:
    """Killed while a createRuntime hook runs: cgroups made, the init set up and waiting, and
    (without a mount namespace) its mounts in ours."""
    flag = tmp_path / "in-hook"

    def mutate(cfg: dict) -> None:
        if variant == "no-mntns":
            no_mntns(cfg)
        # Blocks the first create only: the id's reuse at the end runs it too.
        script = f"[ -e {flag} ] && exit 0; touch {flag}; exec sleep 60"
        cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]}

    b = bundle(["true"], mutate)
    t = Trial(rt, b, f"create killed in hook variant={variant}")
    set_args(b, ["sleep", t.needles[0]])
    cmd = Cmd(rt, "create", "--bundle", str(b), t.cid)
    _wait_for(flag.exists, "the hook")
    if variant == "no-mntns":
        assert mounts_beneath(b / "rootfs"), "expected the container's mounts in our namespace"
    assert cgroup_dirs_named(t.cid)
    cmd.kill_after(0)
    assert t.state_is_sane() is None  # no state.json: no container
    p = t.run("delete", t.cid, ok=False)
    assert (p.returncode, p.stderr) == (1, b"container does not exist\n")
    t.force_delete_and_check()
    t.reuse()


def test_create_killed_between_ready_and_saving_state(rt: Runtime, bundle: BundleFactory) -> None:
    """The init is ready and blocks on exec.fifo forever; only the intent record names it.
    Made by removing state.json of a created container: what a kill right before the save leaves."""
    t = Trial(rt, bundle(["true"], no_mntns), "killed before save")
    t.create()
    d = Path(rt.root) / t.cid
    init = rt.state(t.cid)["pid"]
    (d / "state.json").unlink()
    assert sorted(os.listdir(d)) == ["exec.fifo", "intent.json"]
    assert json.loads((d / "intent.json").read_text())["pid"] == init
    assert t.state_is_sane() is None
    p = rt("list", "--format", "json", log_json=False)
    assert p.returncode == 0 and p.stdout == b"null\n", p
    p = t.run("start", t.cid, ok=False)
    assert (p.returncode, p.stderr) == (1, b"container does not exist\n")
    t.force_delete_and_check()
    assert not Path(f"/proc/{init}").exists() or Path(f"/proc/{init}/stat").read_text().split()[2] == "Z"
    t.reuse()


def test_paused_container_without_state(rt: Runtime, bundle: BundleFactory) -> None:
    """A frozen cgroup (killed between freeze and thaw) is thawed before its tasks are killed."""
    t = Trial(rt, bundle(["true"]), "paused without state")
    t.create()
    t.run("start", t.cid)
    t.run("pause", t.cid)
    (Path(rt.root) / t.cid / "state.json").unlink()
    t.force_delete_and_check()


def test_unreadable_state_json(rt: Runtime, bundle: BundleFactory) -> None:
    b = bundle(["true"])
    for content in (b"", b'{"id": "x", "bund', b"[]", b"\0\0\0\0"):
        t = Trial(rt, b, f"unreadable state {content!r}")
        t.create()
        t.run("start", t.cid)
        (Path(rt.root) / t.cid / "state.json").write_bytes(content)
        commands = (["state", t.cid], ["delete", t.cid], ["start", t.cid], ["kill", t.cid],
                    ["exec", t.cid, "true"])
        for args in commands:
            p = t.run(*args, ok=False)
            err = p.stderr.decode()
            assert p.returncode != 0 and err.count("\n") == 1, t.fail(f"{args}: {p.returncode} {err}")
            assert f"container {t.cid}: state.json is unreadable (" in err, t.fail(f"{args}: {err}")
            assert "internal error" not in err
        p = rt("list", log_json=False)
        assert p.returncode == 0 and t.cid.encode() not in p.stdout, t.fail(str(p))
        assert b"state.json is unreadable" in p.stderr
        t.force_delete_and_check()
        t.reuse()


def test_empty_state_dir_and_stray_temp_files(rt: Runtime, bundle: BundleFactory) -> None:
    b = bundle(["true"])
    t = Trial(rt, b, "empty dir")
    (Path(rt.root) / t.cid).mkdir(parents=True)  # create killed right after its mkdir
    p = t.run("create", "--bundle", str(b), t.cid, ok=False)
    assert p.returncode == 1 and b"already exists" in p.stderr
    assert t.state_is_sane() is None
    t.force_delete_and_check()
    # Temp files of killed writers (state.json, resources.json) break nothing.
    t.create()
    t.run("start", t.cid)
    d = Path(rt.root) / t.cid
    (d / ".state.json.4194303").write_bytes(b'{"id": "x", "bu')
    (d / ".resources.json.4194302").write_bytes(b"")
    assert rt.state(t.cid)["status"] == "running"
    t.run("update", "--pids-limit", "77", t.cid)
    t.run("kill", t.cid, "KILL")
    _wait_for(lambda: rt.state(t.cid)["status"] == "stopped", "stopped")
    t.run("delete", t.cid)
    assert not d.exists()
    assert leftovers(rt, t.cid, t.needles, b / "rootfs") == []


def test_start_killed_after_releasing_the_init(rt: Runtime, bundle: BundleFactory) -> None:
    """What a start killed after the init took its byte, before it removed exec.fifo and saved
    `started`, leaves: a running process, a fifo and started=false.  Made by putting those back
    after a real start."""
    t = Trial(rt, bundle(["true"]), "start killed after release")
    t.create()
    t.run("start", t.cid)
    _wait_for(lambda: bool(processes_with(t.needles)), "the user process")
    d = Path(rt.root) / t.cid
    os.mkfifo(d / "exec.fifo", 0o622)
    rec = json.loads((d / "state.json").read_text())
    assert rec["init_exe"] and rec["started"]
    rec["started"] = False
    (d / "state.json").write_text(json.dumps(rec))
    assert rt.state(t.cid)["status"] == "running"  # not "created": the init has exec'd
    p = t.run("start", t.cid, ok=False)
    assert (p.returncode, p.stderr) == (1, b"cannot start an already running container\n")
    t.run("exec", t.cid, "true")
    t.run("kill", t.cid, "KILL")
    _wait_for(lambda: rt.state(t.cid)["status"] == "stopped", "stopped")
    t.run("delete", t.cid)
    assert leftovers(rt, t.cid, t.needles, t.bundle / "rootfs") == []


def test_start_killed_while_the_init_runs_its_start_hook(rt: Runtime, bundle: BundleFactory) -> None:
    """Killed after the init took its byte, while it still runs a startContainer hook (before
    execve): state says created, and a second start waits for the execve and succeeds."""
    def mutate(cfg: dict) -> None:
        cfg["root"]["readonly"] = False
        script = "[ -e /tmp/hooked ] && exit 0; touch /tmp/hooked; sleep 2"
        cfg["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]}

    b = bundle(["true"], mutate)
    t = Trial(rt, b, "start killed in startContainer hook")
    t.create()
    cmd = Cmd(rt, "start", t.cid)
    _wait_for((b / "rootfs" / "tmp" / "hooked").exists, "the startContainer hook")
    cmd.kill_after(0)
    d = Path(rt.root) / t.cid
    assert (d / "exec.fifo").exists() and not json.loads((d / "state.json").read_text())["started"]
    assert rt.state(t.cid)["status"] == "created"
    assert not processes_with(t.needles)
    t.run("start", t.cid)  # completes the first one's start
    assert processes_with(t.needles)
    assert rt.state(t.cid)["status"] == "running"
    assert not (d / "exec.fifo").exists()
    t.force_delete_and_check()
