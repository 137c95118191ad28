"""The state store: ids, locking, atomic state, status derivation from pid + start time."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ociruntime.errors import ContainerExists, ContainerNotFound, OCIError
from ociruntime.state.ids import validate_id
from ociruntime.state.proc import is_alive, pidfd_for, start_time
from ociruntime.state.store import Record, Store


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a b", "x" * 300, "a\0b", "é"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(OCIError, match="invalid container id"):
        validate_id(bad)


@pytest.mark.parametrize("good", ["a", "A-b_c.d+e", "x" * 255, "0" * 64])
def test_good_ids(good: str) -> None:
    assert validate_id(good) == good


def test_create_save_load(tmp_path) -> None:
    store = Store(str(tmp_path / "root"))
    with store.create("c1") as cdir:
        assert stat.S_IMODE(os.stat(cdir.path).st_mode) == 0o700
        rec = Record(id="c1", bundle="/b", rootfs="/b/rootfs", created="now", pid=os.getpid(),
                     pid_start=start_time(os.getpid()) or 0)
        cdir.save(rec)
        assert stat.S_IMODE(os.stat(os.path.join(cdir.path, "state.json")).st_mode) == 0o600
    with pytest.raises(ContainerExists):
        store.create("c1")
    with store.open("c1") as cdir:
        loaded = cdir.load()
        assert loaded == rec
        assert cdir.status(loaded) == "running"  # alive, no fifo
        os.mkfifo(cdir.fifo_path)
        assert cdir.status(loaded) == "created"
        loaded.pid_start += 1  # same pid, other start time: a reused pid is not our init
        assert cdir.status(loaded) == "stopped"
    assert store.ids() == ["c1"]
    with pytest.raises(ContainerNotFound):
        store.open("c2")


def test_lock_serializes(tmp_path) -> None:
    store = Store(str(tmp_path))
    cdir = store.create("c1")
    cdir.save(Record(id="c1", bundle="/b", rootfs="/r", created="now"))
    got: list[float] = []

    def other() -> None:
        with store.open("c1"):
            got.append(time.monotonic())

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.2)
    assert got == []  # still blocked on our lock
    released = time.monotonic()
    cdir.close()
    t.join(5)
    assert got and got[0] >= released


def test_open_after_concurrent_remove(tmp_path) -> None:
    store = Store(str(tmp_path))
    cdir = store.create("c1")
    cdir.save(Record(id="c1", bundle="/b", rootfs="/r", created="now"))
    errors: list[BaseException] = []

    def other() -> None:
        try:
            store.open("c1")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.1)
    cdir.remove()
    cdir.close()
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], ContainerNotFound)


def test_proc_identity() -> None:
    me = os.getpid()
    st = start_time(me)
    assert st and is_alive(me, st) and not is_alive(me, st + 1)
    fd = pidfd_for(me, st)
    assert fd is not None
    os.close(fd)
    assert pidfd_for(me, st + 1) is None
    assert not is_alive(0, 0)
