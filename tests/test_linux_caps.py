"""Tests for ociruntime.linux.caps: name table, parsing, bounding drop, capset, ambient, keepcaps."""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from ociruntime.linux import caps
from ociruntime.linux.caps import CAP_NAMES, CapSets
from ociruntime.linux.ids import set_ids


def run_in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child; return its result or re-raise its exception here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
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


def bit(*names: str) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAP_NAMES[name]
    return mask


def test_cap_names_complete() -> None:
    assert sorted(CAP_NAMES.values()) == list(range(41))
    assert CAP_NAMES["CAP_CHOWN"] == 0
    assert CAP_NAMES["CAP_SYS_ADMIN"] == 21
    assert CAP_NAMES["CAP_CHECKPOINT_RESTORE"] == 40
    assert all(name.startswith("CAP_") and name.isupper() for name in CAP_NAMES)


def test_last_cap_matches_proc_and_probe() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        expected = int(f.read())
    assert caps.last_cap() == expected
    assert caps._probe_last_cap() == expected


@pytest.mark.parametrize(
    ("names", "mask", "warned"),
    [
        ([], 0, []),
        (["CAP_CHOWN"], 1, []),
        (["CAP_KILL", "CAP_NET_RAW", "CAP_KILL"], (1 << 5) | (1 << 13), []),
        (["CAP_CHOWN", "CAP_FOO"], 1, ["CAP_FOO"]),
        (["cap_chown"], 0, ["cap_chown"]),
        (["CAP_FOO", "CAP_BAR", "CAP_FOO"], 0, ["CAP_FOO", "CAP_BAR"]),
    ],
)
def test_parse_caps(names: list[str], mask: int, warned: list[str]) -> None:
    messages: list[str] = []
    assert caps.parse_caps(names, messages.append) == mask
    if warned:
        assert messages == [f"ignoring unknown or unavailable capabilities: [{' '.join(warned)}]"]
    else:
        assert messages == []


def test_parse_caps_skips_caps_above_last_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "_last_cap", 38)
    messages: list[str] = []
    assert caps.parse_caps(["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"], messages.append) == 1 << 38
    assert messages == ["ignoring unknown or unavailable capabilities: [CAP_BPF CAP_CHECKPOINT_RESTORE]"]


def test_parse_caps_without_warn_callback() -> None:
    assert caps.parse_caps(["CAP_FOO", "CAP_SETUID"], None) == 1 << 7


def test_caps_from_spec() -> None:
    messages: list[str] = []
    spec = {
        "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_NOPE"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_NET_RAW"],
        "ambient": ["CAP_NOPE", "CAP_NET_RAW"],
    }
    got = caps.caps_from_spec(spec, messages.append)
    assert got == CapSets(
        bounding=bit("CAP_CHOWN", "CAP_NET_RAW"),
        effective=bit("CAP_CHOWN"),
        permitted=bit("CAP_CHOWN", "CAP_NET_RAW"),
        inheritable=0,
        ambient=bit("CAP_NET_RAW"),
    )
    assert messages == ["ignoring unknown or unavailable capabilities: [CAP_NOPE]"]
    assert caps.caps_from_spec(None, messages.append) == CapSets(0, 0, 0, 0, 0)


def test_cap_names_roundtrip() -> None:
    assert caps.cap_names(bit("CAP_CHOWN", "CAP_BPF")) == ["CAP_CHOWN", "CAP_BPF"]


def test_get_caps_reads_status() -> None:
    got = caps.get_caps()
    with open("/proc/self/status") as f:
        lines = dict(line.split(":", 1) for line in f if line.startswith("Cap"))
    assert got == {k: int(v, 16) for k, v in lines.items()}
    assert caps.get_caps(os.getpid())["CapBnd"] == got["CapBnd"]


@pytest.mark.root
def test_drop_bounding_keeps_only_requested() -> None:
    keep = bit("CAP_CHOWN", "CAP_NET_RAW", "CAP_SETPCAP")
    before = caps.get_caps()["CapBnd"]

    def child() -> dict[str, int]:
        caps.drop_bounding(keep)
        # A second call has nothing left to drop and must succeed.
        caps.drop_bounding(keep)
        return caps.get_caps()

    got = run_in_child(child)
    assert got["CapBnd"] == keep & before
    assert caps.get_caps()["CapBnd"] == before  # the test runner is untouched


@pytest.mark.root
def test_drop_bounding_without_setpcap_fails_cleanly() -> None:
    def child() -> None:
        caps.set_caps(CapSets(effective=bit("CAP_CHOWN"), permitted=bit("CAP_CHOWN")))
        caps.drop_bounding(0)

    with pytest.raises(OSError) as info:
        run_in_child(child)
    assert info.value.errno == errno.EPERM
    assert "PR_CAPBSET_DROP" in str(info.value)


@pytest.mark.root
def test_set_caps_with_ambient() -> None:
    want = CapSets(
        bounding=0,
        effective=bit("CAP_CHOWN", "CAP_NET_RAW"),
        permitted=bit("CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"),
        inheritable=bit("CAP_NET_RAW", "CAP_KILL"),
        ambient=bit("CAP_NET_RAW"),
    )

    got = run_in_child(lambda: (caps.set_caps(want), caps.get_caps())[1])
    assert got["CapEff"] == want.effective
    assert got["CapPrm"] == want.permitted
    assert got["CapInh"] == want.inheritable
    assert got["CapAmb"] == want.ambient


@pytest.mark.root
def test_set_caps_clears_inherited_ambient() -> None:
    raw = bit("CAP_NET_RAW")

    def child() -> dict[str, int]:
        caps.set_caps(CapSets(effective=raw, permitted=raw, inheritable=raw, ambient=raw))
        assert caps.get_caps()["CapAmb"] == raw
        caps.set_caps(CapSets(effective=raw, permitted=raw, inheritable=raw, ambient=0))
        return caps.get_caps()

    got = run_in_child(child)
    assert got["CapAmb"] == 0
    assert got["CapInh"] == raw


@pytest.mark.root
def test_set_caps_ambient_not_inheritable_is_an_error() -> None:
    raw = bit("CAP_NET_RAW")
    with pytest.raises(OSError) as info:
        run_in_child(lambda: caps.set_caps(CapSets(effective=raw, permitted=raw, ambient=raw)))
    assert info.value.errno == errno.EPERM
    assert "CAP_NET_RAW" in str(info.value)
    assert "inheritable" in str(info.value)


@pytest.mark.root
def test_keep_caps_across_setuid() -> None:
    def child(keep: bool) -> dict[str, int]:
        caps.keep_caps(keep)
        set_ids(1000, 1000)
        return caps.get_caps()

    full = caps.get_caps()["CapPrm"]
    kept = run_in_child(lambda: child(True))
    assert kept["CapPrm"] == full
    assert kept["CapEff"] == 0  # setuid away from 0 always clears the effective set
    lost = run_in_child(lambda: child(False))
    assert lost["CapPrm"] == 0
