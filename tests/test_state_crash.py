"""Crash safety of the state store: create's intent record, unreadable state.json, stray temp
files, the mkdir/flock window, exec detection for a start killed midway, and the recovery
``delete --force`` does from an intent record (that part on this host's real cgroups, as root)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from ociruntime.cgroups import Layout, Mount, manager_from_state, new_manager
from ociruntime.errors import ContainerNotFound, OCIError
from ociruntime.lifecycle import delete as delete_mod
from ociruntime.lifecycle.context import Context
from ociruntime.lifecycle.query import list_states
from ociruntime.state.proc import exe_identity, exec_done, start_time
from ociruntime.state.store import INTENT_FILE, STATE_FILE, Intent, Record, StateCorrupt, Store


def _record(cid: str, **kw: object) -> Record:
    return Record(id=cid, bundle="/b", rootfs="/b/rootfs", created="now", **kw)  # type: ignore[arg-type]


# ---- the intent record ------------------------------------------------------------------------

def test_intent_round_trip(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    intent = Intent(cgroup={"driver": "cgroupfs", "created": ["/sys/fs/cgroup/pids/x"]},
                    rootfs="/b/rootfs", kept_mounts=[12, 34])
    with store.create("c1") as cdir:
        assert cdir.load_intent() is None
        cdir.save_intent(intent)
        intent.pid, intent.pid_start = 42, 4242
        cdir.save_intent(intent)  # the second write (pid known) replaces the first whole
        got = cdir.load_intent()
    assert got is not None and got.to_dict() == intent.to_dict()
    assert json.loads((tmp_path / "c1" / INTENT_FILE).read_text())["pid"] == 42
    assert oct((tmp_path / "c1" / INTENT_FILE).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("bad", [
    [], "x", {"cgroup": []}, {"rootfs": 1}, {"kept_mounts": "1"}, {"kept_mounts": [True]},
    {"pid": "1"}, {"pid": 1.5}, {"pid_start": None},
])
def test_intent_shape_checked(bad: object) -> None:
    with pytest.raises(ValueError):
        Intent.from_dict(bad)


def test_intent_defaults() -> None:
    i = Intent.from_dict({})
    assert (i.cgroup, i.rootfs, i.kept_mounts, i.pid, i.pid_start) == ({}, "", None, 0, 0)


# ---- a directory that is not (or no longer) a container ---------------------------------------

def test_intent_only_directory_is_no_container(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with store.create("half") as cdir:
        cdir.save_intent(Intent(rootfs="/r"))
    with pytest.raises(ContainerNotFound):
        store.open("half")
    assert list_states(Context(root=str(tmp_path))) == []
    cdir = store.open_any("half")
    assert cdir is not None
    with cdir:
        with pytest.raises(ContainerNotFound):
            cdir.load()
    assert store.open_any("nothing") is None


@pytest.mark.parametrize("content", [
    b"", b"{", b'{"id": "c1", "bundle": "/b"', b"[]", b"null", b'"text"', b"\xff\xfe",
    b'{"bundle": "/b", "rootfs": "/r", "created": "now"}',
    b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "created": "now", "pid": "12"}',
    b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "created": "now", "cgroup": []}',
])
def test_unreadable_state_is_one_clear_error(tmp_path: Path, content: bytes,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(str(tmp_path))
    with store.create("c1") as cdir:
        cdir.save(_record("c1"))
    (tmp_path / "c1" / STATE_FILE).write_bytes(content)
    with store.open("c1") as cdir, pytest.raises(StateCorrupt) as info:
        cdir.load()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("container c1: state.json is unreadable (")
    assert "delete --force" in msg
    # list leaves it out, with a warning
    assert list_states(Context(root=str(tmp_path))) == []


def test_unknown_state_keys_are_ignored(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with store.create("c1") as cdir:
        cdir.save(_record("c1"))
    path = tmp_path / "c1" / STATE_FILE
    data = json.loads(path.read_text())
    data["from_a_newer_runtime"] = {"x": 1}
    del data["init_exe"]  # and one written before the field existed
    path.write_text(json.dumps(data))
    with store.open("c1") as cdir:
        assert cdir.load() == _record("c1")


def test_stray_temp_files_are_harmless(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with store.create("c1") as cdir:
        cdir.save(_record("c1"))
    # What a writer killed between creating its temp file and renaming it leaves.
    (tmp_path / "c1" / ".state.json.99999").write_bytes(b'{"id": "c1", "bund')
    (tmp_path / "c1" / ".resources.json.99998").write_bytes(b"")
    (tmp_path / ".c2.tmp").write_bytes(b"")
    with store.open("c1") as cdir:
        assert cdir.load() == _record("c1")
        rec = cdir.load()
        rec.started = True
        cdir.save(rec)  # a writer that reuses the pid of a dead one truncates its leftover
        assert cdir.load().started
    assert store.ids() == ["c1"]
    with store.open("c1") as cdir:
        cdir.remove()
    assert not (tmp_path / "c1").exists()


def test_remove_drops_state_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed while removing, what is left is no container (and --force finishes it)."""
    from ociruntime.state import store as store_mod

    store = Store(str(tmp_path))
    with store.create("c1") as cdir:
        cdir.save(_record("c1"))
        cdir.save_intent(Intent())
    seen: list[list[str]] = []
    monkeypatch.setattr(store_mod, "_clear_dir", lambda fd: seen.append(sorted(os.listdir(fd))))
    with store.open("c1") as cdir:
        cdir.remove()
    assert seen == [[INTENT_FILE]]
    with pytest.raises(ContainerNotFound):
        store.open("c1")


def test_create_survives_force_delete_between_mkdir_and_lock(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path))
    real_lock = Store._lock
    calls: list[str] = []

    def racing_lock(self: Store, path: str, cid: str):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 1:
            # `delete --force c1` got the lock first, found an empty directory, removed it.
            os.rmdir(path)
        return real_lock(self, path, cid)

    monkeypatch.setattr(Store, "_lock", racing_lock)
    with store.create("c1") as cdir:
        cdir.save(_record("c1"))
    assert len(calls) == 2
    with store.open("c1") as cdir:
        assert cdir.load().id == "c1"


# ---- start killed after the init took its byte ------------------------------------------------

def test_exec_detection() -> None:
    me = os.getpid()
    mine = exe_identity(me)
    st = os.stat("/proc/self/exe")
    assert mine == [st.st_dev, st.st_ino]
    assert not exec_done(me, mine)
    assert exec_done(me, [mine[0], mine[1] + 1])  # another executable: it exec'd
    assert not exec_done(me, None)  # a record from before the field: unknown, not exec'd
    assert exe_identity(2**22 + 1) is None
    assert not exec_done(2**22 + 1, [1, 2])


def test_status_with_stale_fifo(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    me = os.getpid()
    rec = _record("c1", pid=me, pid_start=start_time(me) or 0, init_exe=exe_identity(me))
    with store.create("c1") as cdir:
        cdir.save(rec)
        os.mkfifo(cdir.fifo_path)
        assert cdir.status(rec) == "created"  # still the executable it waited with
        rec.init_exe = [0, 0]
        # exec'd, though exec.fifo is there and `started` is not: a start killed before it
        # recorded the start released it
        assert cdir.status(rec) == "running"
        rec.init_exe = None
        assert cdir.status(rec) == "created"


# ---- the cgroup manager's intent --------------------------------------------------------------

def _fake(tmp_path: Path) -> Layout:
    v1 = {}
    for c in ("memory", "pids", "freezer"):
        (tmp_path / c).mkdir()
        v1[c] = Mount(str(tmp_path / c))
    (tmp_path / "unified").mkdir()
    return Layout("hybrid", v1, Mount(str(tmp_path / "unified")))


def test_to_intent_lists_only_missing_dirs(tmp_path: Path) -> None:
    lay = _fake(tmp_path)
    (tmp_path / "memory" / "pod").mkdir()  # a pre-existing parent
    (tmp_path / "pids" / "pod" / "c1").mkdir(parents=True)  # a pre-existing leaf
    mgr = new_manager("/pod/c1", "c1", root=str(tmp_path), layout=lay)
    intent = mgr.to_intent()
    assert sorted(intent["created"]) == sorted(str(tmp_path / p) for p in (
        "memory/pod/c1", "freezer/pod", "freezer/pod/c1", "unified/pod", "unified/pod/c1"))
    assert {k: v for k, v in intent.items() if k != "created"} == {
        k: v for k, v in mgr.to_state().items() if k != "created"}
    mgr.create()
    # the prediction is what create then made
    assert sorted(mgr.to_state()["created"]) == sorted(intent["created"])
    manager_from_state(intent)  # a valid manager state


def test_mkdir_retries_a_parent_removed_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = _fake(tmp_path)
    (tmp_path / "pids" / "shared").mkdir()
    mgr = new_manager("/shared/c1", "c1", root=str(tmp_path), layout=lay)
    real_mkdir = os.mkdir
    fired: list[bool] = []

    def mkdir(path, mode=0o777, **kw):  # type: ignore[no-untyped-def]
        if str(path) == str(tmp_path / "pids" / "shared" / "c1") and not fired:
            # another container's delete removed the (empty) shared parent just now
            fired.append(True)
            os.rmdir(tmp_path / "pids" / "shared")
        return real_mkdir(path, mode, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    mgr.create()
    assert fired and (tmp_path / "pids" / "shared" / "c1").is_dir()
    # the parent it had to make again is its own now
    assert str(tmp_path / "pids" / "shared") in mgr.to_state()["created"]


# ---- recovery from an intent record (root, real cgroups) --------------------------------------

def _owned_ok(cgroup: dict) -> None:
    owned = delete_mod._owned_cgroup(cgroup)
    assert owned is not None and set(owned["paths"]) == set(owned["mounts"])


def test_owned_cgroup_excludes_pre_existing_leaves(tmp_path: Path) -> None:
    lay = _fake(tmp_path)
    (tmp_path / "pids" / "c1").mkdir()
    mgr = new_manager("/c1", "c1", root=str(tmp_path), layout=lay)
    intent = mgr.to_intent()
    owned = delete_mod._owned_cgroup(intent)
    assert owned is not None and "pids" not in owned["paths"] and "memory" in owned["paths"]
    _owned_ok(intent)
    assert delete_mod._owned_cgroup({}) is None
    assert delete_mod._owned_cgroup({**intent, "created": []}) is None


def test_recover_without_cgroups_or_pid(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with store.create("c1") as cdir:
        cdir.save_intent(Intent(rootfs=str(tmp_path / "rootfs")))
    cdir = store.open_any("c1")
    assert cdir is not None
    with cdir:
        delete_mod.recover(cdir)
    assert not (tmp_path / "c1").exists()


def test_recover_with_unreadable_intent_removes_the_directory(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(str(tmp_path))
    with store.create("c1"):
        pass
    (tmp_path / "c1" / INTENT_FILE).write_bytes(b"{broken")
    cdir = store.open_any("c1")
    assert cdir is not None
    with cdir:
        delete_mod.recover(cdir)
    assert not (tmp_path / "c1").exists()


def _host_layout() -> Layout | None:
    from ociruntime.cgroups import detect_layout

    lay = detect_layout()
    return None if lay.mode == "none" else lay


needs_root_cgroups = pytest.mark.skipif(os.geteuid() != 0 or _host_layout() is None,
                                        reason="needs root and a mounted cgroup filesystem")


class _Child:
    """A forked child that blocks until killed (then reaped by us)."""

    def __init__(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        self.pid, self.w = pid, w

    def alive(self) -> bool:
        got, _ = os.waitpid(self.pid, os.WNOHANG)
        return got == 0

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.w)


def _leftover_dirs(top: str) -> list[str]:
    lay = _host_layout()
    assert lay is not None
    mounts = {m.mountpoint for m in lay.v1.values()}
    if lay.unified is not None:
        mounts.add(lay.unified.mountpoint)
    return sorted(os.path.join(m, top) for m in mounts if os.path.exists(os.path.join(m, top)))


@needs_root_cgroups
def test_recover_kills_and_removes_what_create_made(tmp_path: Path) -> None:
    top = f"ociruntime-crash-test-{os.getpid()}"
    mgr = new_manager(f"/{top}/c1", "c1")
    store = Store(str(tmp_path))
    child = _Child()
    try:
        with store.create("c1") as cdir:
            intent = Intent(cgroup=mgr.to_intent(), rootfs=str(tmp_path / "rootfs"))
            cdir.save_intent(intent)
            mgr.create()
            mgr.join(child.pid)
            # A kill --all or delete killed between freezing and thawing left it frozen.
            mgr.freeze()
            intent.pid, intent.pid_start = child.pid, start_time(child.pid) or 0
            cdir.save_intent(intent)
            # ... and create was killed here, before saving state.json.
        cdir = store.open_any("c1")
        assert cdir is not None
        with cdir:
            delete_mod.recover(cdir)
        assert not child.alive()
        assert _leftover_dirs(top) == []
        assert not (tmp_path / "c1").exists()
    finally:
        child.close()
        for d in _leftover_dirs(top):
            for sub in sorted((p for p, _, _ in os.walk(d)), key=len, reverse=True):
                os.rmdir(sub)


@needs_root_cgroups
def test_recover_leaves_a_pre_existing_cgroup_alone(tmp_path: Path) -> None:
    top = f"ociruntime-crash-test-{os.getpid()}-pre"
    outsider, init = _Child(), _Child()
    mgr = new_manager(f"/{top}", "c1")
    try:
        mgr.create()  # someone else's cgroup, with someone else's process in it
        mgr.join(outsider.pid)
        store = Store(str(tmp_path))
        with store.create("c1") as cdir:
            ours = new_manager(f"/{top}", "c1")
            intent = Intent(cgroup=ours.to_intent())
            assert intent.cgroup["created"] == []
            ours.create()
            ours.join(init.pid)
            intent.pid, intent.pid_start = init.pid, start_time(init.pid) or 0
            cdir.save_intent(intent)
        cdir = store.open_any("c1")
        assert cdir is not None
        with cdir:
            delete_mod.recover(cdir)
        # The init (by its recorded pid and start time) is killed; the outsider and the cgroup
        # that was there before stay.
        assert not init.alive()
        assert outsider.alive()
        assert _leftover_dirs(top) == sorted(set(mgr.paths.values()))
    finally:
        init.close()
        outsider.close()
        try:
            mgr.destroy()
        except OCIError:
            pass


def test_signal_all_without_a_freezer(tmp_path: Path) -> None:
    """A cgroup state with no freezer hierarchy (what recover holds when only some leaves were
    create's) is still signalled, just not frozen first."""
    from ociruntime.lifecycle.kill import signal_all

    (tmp_path / "memory" / "c1").mkdir(parents=True)
    child = _Child()
    try:
        (tmp_path / "memory" / "c1" / "cgroup.procs").write_text(f"{child.pid}\n")
        state = {"driver": "cgroupfs", "mode": "v1", "paths": {"memory": str(tmp_path / "memory" / "c1")},
                 "mounts": {"memory": str(tmp_path / "memory")}, "created": []}
        signal_all(state, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        os.close(child.w)
