"""The image code stays off the runtime's hot paths: nothing in cli (but the `bundle` command's
own module), lifecycle or init imports it, and the frequent commands do not load it (it imports
hashlib, tarfile, gzip, json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ociruntime"


@pytest.mark.parametrize("sub", ["cli", "lifecycle", "init"])
def test_hot_packages_do_not_import_image(sub) -> None:
    for path in sorted((PKG / sub).rglob("*.py")):
        if path.name == "cmd_bundle.py":  # the `bundle` command itself, imported only when chosen
            continue
        text = path.read_text()
        assert "ociruntime.image" not in text and "from ociruntime import image" not in text, path


def test_state_command_loads_no_image_module(tmp_path) -> None:
    probe = ("import json, sys\nfrom ociruntime.cli import main as m\n"
             "sys.argv = ['ociruntime', '--root', sys.argv[1], 'state', 'x']\n"
             "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                       timeout=30, cwd=PKG.parent)
    modules = json.loads(p.stderr.strip().splitlines()[-1])
    assert not [m for m in modules if m.startswith("ociruntime.image") or m in ("tarfile", "hashlib")]
