"""ociruntime.record: the dataclasses subset the runtime uses, without importing inspect."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ociruntime.record import FrozenInstanceError, dataclass, field, fields, replace


@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@dataclass
class Mutable:
    a: int
    b: dict = field(default_factory=dict)


def test_init_defaults_and_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, [])
    assert Point(1).tags is not Point(1).tags
    assert Point(1, 2, ["t"]) == Point(x=1, y=2, tags=["t"])
    assert fields(Point) == ("x", "y", "tags")
    assert repr(Point(1)) == "Point(x=1, y=0, tags=[])"


def test_frozen_and_hash() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))  # type: ignore[arg-type]
    m = Mutable(1)
    m.a = 2
    assert m.a == 2 and m != Mutable(1)
    with pytest.raises(TypeError):
        hash(m)


def test_replace_and_errors() -> None:
    p = replace(Point(1, 2), y=5)
    assert p == Point(1, 5)
    with pytest.raises(TypeError):
        replace(p, z=1)
    with pytest.raises(TypeError, match="missing"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected"):
        Point(1, w=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="non-default"):
        @dataclass
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]


def test_create_path_imports_no_dataclasses_or_inspect() -> None:
    # -S, as the installed launcher runs: the editable-install finder would import pathlib itself
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (f"import sys\nsys.path[:0] = {[repo, *site]!r}\n"
            "import ociruntime.lifecycle.create, ociruntime.cgroups.layout\n"
            "print(sorted(m for m in ('dataclasses', 'inspect', 'pathlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
