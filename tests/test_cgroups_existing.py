"""Manager.check_existing on fake trees: a reused cgroup that is frozen or holds processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociruntime.cgroups import Layout, Mount, new_manager
from ociruntime.errors import OCIError


def _layout(tmp_path: Path, mode: str) -> Layout:
    v1 = {}
    if mode != "v2":
        for c in ("pids", "freezer"):
            (tmp_path / c).mkdir()
            v1[c] = Mount(str(tmp_path / c))
    unified = None
    if mode != "v1":
        u = tmp_path / ("unified" if mode == "hybrid" else "")
        u.mkdir(exist_ok=True)
        unified = Mount(str(u))
    return Layout(mode, v1, unified)


def _manager(tmp_path: Path, mode: str, path: str = "/a/c"):
    return new_manager(path, "id", root=str(tmp_path), layout=_layout(tmp_path, mode))


def _check(mgr) -> list[str]:
    warnings: list[str] = []
    mgr.check_existing(warnings.append)
    return warnings


@pytest.mark.parametrize("mode", ["v1", "hybrid", "v2"])
def test_absent_cgroup_passes(tmp_path: Path, mode: str) -> None:
    mgr = _manager(tmp_path, mode)
    assert _check(mgr) == []
    assert not mgr.exists()  # nothing was created by the check


@pytest.mark.parametrize("state", ["FROZEN", "FREEZING"])
def test_v1_frozen_cgroup_refused_and_kept(tmp_path: Path, state: str) -> None:
    mgr = _manager(tmp_path, "hybrid")
    leaf = tmp_path / "freezer" / "a" / "c"
    leaf.mkdir(parents=True)
    (leaf / "freezer.state").write_text(state + "\n")
    with pytest.raises(OCIError) as exc:
        _check(mgr)
    assert str(exc.value) == "container's cgroup unexpectedly frozen"
    assert leaf.is_dir()
    (leaf / "freezer.state").write_text("THAWED\n")
    assert _check(mgr) == []


def test_frozen_ancestor_of_a_new_cgroup_refused(tmp_path: Path) -> None:
    """A cgroup created under a frozen one starts frozen: the init would never run."""
    mgr = _manager(tmp_path, "v1")
    parent = tmp_path / "freezer" / "a"
    parent.mkdir()
    (parent / "freezer.state").write_text("FROZEN\n")
    with pytest.raises(OCIError, match="unexpectedly frozen"):
        _check(mgr)


@pytest.mark.parametrize("mode", ["hybrid", "v2"])
def test_unified_frozen_cgroup_refused(tmp_path: Path, mode: str) -> None:
    mgr = _manager(tmp_path, mode)
    leaf = Path(mgr.paths["unified"])
    leaf.mkdir(parents=True)
    (leaf / "cgroup.events").write_text("populated 0\nfrozen 1\n")
    with pytest.raises(OCIError, match="unexpectedly frozen"):
        _check(mgr)
    (leaf / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    assert _check(mgr) == []


@pytest.mark.parametrize("mode", ["v1", "hybrid", "v2"])
def test_non_empty_cgroup_warns_and_goes_on(tmp_path: Path, mode: str) -> None:
    mgr = _manager(tmp_path, mode)
    for d in mgr.paths.values():
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / "cgroup.procs").write_text("")
    pids_dir = Path(mgr.paths["unified" if mode != "v1" else "pids"])
    (pids_dir / "cgroup.procs").write_text("100\n101\n")
    (pids_dir / "sub").mkdir()
    (pids_dir / "sub" / "cgroup.procs").write_text("102\n")
    assert _check(mgr) == ["container's cgroup is not empty: 3 process(es) found"]
    for d in mgr.paths.values():
        for f in Path(d).rglob("cgroup.procs"):
            f.write_text("")
    assert _check(mgr) == []


# --- linux.resources.unified outside pure v2 (runc's ErrV1NoUnified) ----------------------------
@pytest.mark.parametrize("mode", ["v1", "hybrid"])
def test_unified_refused_unless_pure_v2(tmp_path: Path, mode: str) -> None:
    from ociruntime.errors import ConfigError

    mgr = _manager(tmp_path, mode)
    mgr.create()
    with pytest.raises(ConfigError) as exc:
        mgr.set_resources({"unified": {"memory.high": "1"}}, skip_devices=True)
    assert str(exc.value) == "invalid configuration: cannot use unified on cgroup v1"
    # an empty map asks for nothing (runc only takes a non-empty one)
    mgr.set_resources({"unified": {}}, skip_devices=True)
    mgr.destroy()


def test_unified_written_on_pure_v2(tmp_path: Path) -> None:
    mgr = _manager(tmp_path, "v2")
    mgr.create()
    leaf = Path(mgr.paths["unified"])
    (leaf / "memory.high").write_text("max\n")
    mgr.set_resources({"unified": {"memory.high": "4096"}}, skip_devices=True)
    assert (leaf / "memory.high").read_text() == "4096"
