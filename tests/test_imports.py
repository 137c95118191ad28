"""Start-up cost: the frequent commands must not import the heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("jsonschema", "pyroute2", "pyseccomp", "seccomp", "prctl", "referencing")

PROBE = """
import json, sys
from ociruntime.cli import main as m
sys.argv = ["ociruntime", "--root", sys.argv[1], *sys.argv[2:]]
try:
    m.main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["state", "x"], ["start", "x"], ["kill", "x", "9"], ["delete", "x"],
                                  ["list"], ["--version"]])
def test_frequent_commands_import_nothing_heavy(tmp_path, argv) -> None:
    p = subprocess.run([sys.executable, "-I", "-c", PROBE, str(tmp_path), *argv],
                       capture_output=True, text=True, timeout=30)
    modules = json.loads(p.stderr.strip().splitlines()[-1])
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    assert heavy == [], f"{argv}: imports {heavy}"
    # the probe really ran the command (an unknown id is reported, not a crash)
    if argv[0] in ("state", "start", "kill", "delete"):
        assert "container does not exist" in p.stderr


def test_create_does_import_validation(tmp_path) -> None:
    """The probe can see imports at all: create validates with jsonschema."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"ociVersion": "1.0.0", "process": {"args": []}}')
    p = subprocess.run([sys.executable, "-I", "-c", PROBE, str(tmp_path / "root"), "create", "--bundle",
                        str(bundle), "c1"], capture_output=True, text=True, timeout=30)
    modules = json.loads(p.stderr.strip().splitlines()[-1])
    assert "jsonschema" in modules
