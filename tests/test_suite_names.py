"""`make test` collects tests/ and integration/ in one pytest run, without packages: two test
modules of one name there make pytest stop at collection, before any test runs."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_module_name_in_both_suites() -> None:
    names = [{p.name for p in (REPO / d).glob("test_*.py")} for d in ("tests", "integration")]
    assert names[0] & names[1] == set()
