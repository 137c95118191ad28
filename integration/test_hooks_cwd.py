"""The working directory each hook kind runs in (runc's): the rootfs for createContainer, the
bundle for prestart/createRuntime (runc runs them from `runc create`, which chdirs to the
bundle), the caller's for poststart/poststop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import new_id

pytestmark = pytest.mark.root


def test_hook_working_directories(rt, bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    caller = tmp_path / "caller"
    caller.mkdir()
    kinds = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")

    def mutate(cfg: dict) -> None:
        cfg["hooks"] = {k: [{"path": "/bin/sh", "args": ["sh", "-c", f"pwd -P > {out / k}"]}]
                        for k in kinds}

    b = bundle(["true"], mutate)
    p = rt("run", "--bundle", str(b), new_id(), cwd=str(caller))
    assert p.returncode == 0, p.stderr.decode()
    got = {k: (out / k).read_text().strip() for k in kinds}
    assert got == {
        "prestart": str(b),
        "createRuntime": str(b),
        "createContainer": os.path.realpath(b / "rootfs"),
        "poststart": str(caller),
        "poststop": str(caller),
    }
