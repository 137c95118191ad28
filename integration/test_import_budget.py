"""Import budget of the hot commands: every module a command imports must be on its allow-list.

``state``, ``start``, ``kill`` and ``delete`` run several times per container and each pays for
its imports on every call (``json`` alone, through ``re`` and ``enum``, cost ~11 ms: more than the
command's own work).  ``create``, ``run`` and ``exec`` need much more, so for them a list of
modules that must never come back.  The runtime under test is run exactly as installed (its
launcher's interpreter, flags and ``sys.path`` lines) against real containers; the modules it
loaded are written to a file after the command returns.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import BundleFactory, new_id, runtime_cmd

# Beyond what the bare interpreter has loaded: the C codecs and what `os` needs.
HOT_STDLIB = {"__future__", "_collections_abc", "_json", "_signal", "_stat", "errno", "fcntl",
              "genericpath", "os", "os.path", "posixpath", "select", "stat"}
# ociruntime modules a hot command may load: the state store, the cgroup manager rebuilt from
# state (frozen check, kill --all, removal), nothing of create's (spec, init, rootfs, seccomp).
HOT_OURS_PREFIXES = ("ociruntime.cli", "ociruntime.errors", "ociruntime.jsonio", "ociruntime.gojson",
                     "ociruntime.log", "ociruntime.lifecycle.", "ociruntime.state", "ociruntime.waits",
                     "ociruntime.linux.signames")
HOT_OURS_EXACT = {"ociruntime", "ociruntime.lifecycle", "ociruntime.linux", "ociruntime.cgroups",
                  "ociruntime.cgroups.base", "ociruntime.cgroups.common", "ociruntime.cgroups.files",
                  "ociruntime.cgroups.manager"}
HOT_LIFECYCLE = {"ociruntime.lifecycle.context", "ociruntime.lifecycle.query", "ociruntime.lifecycle.start",
                 "ociruntime.lifecycle.kill", "ociruntime.lifecycle.delete"}
# Never on any command's path without a feature asking for it.
NEVER = {"json", "typing", "socket", "contextlib", "signal", "shutil", "tempfile", "urllib",
         "urllib.parse", "ipaddress", "dataclasses", "inspect", "subprocess", "jsonschema",
         "pyroute2", "numbers", "selectors", "random", "pathlib", "argparse", "logging",
         "threading", "importlib.machinery", "warnings", "weakref", "re", "enum", "functools"}


def _launcher() -> tuple[list[str], str]:
    """(interpreter with its flags, the set-up lines) of the runtime under test."""
    cmd = runtime_cmd()
    if len(cmd) == 1:  # an installed launcher: "#!python -IS" + sys.path lines + entry()
        text = Path(cmd[0]).read_text().splitlines()
        setup = "\n".join(line for line in text[1:] if "entry" not in line)
        return text[0][2:].split(), setup
    return cmd[:2], ""  # python -I -m ociruntime: the checkout


def modules_of(tmp: Path, *args: str) -> set[str]:
    """Modules a command loaded beyond the interpreter's own start-up set."""
    interp, setup = _launcher()
    out = tmp / f"modules-{time.monotonic_ns()}"
    probe = (f"{setup}\nimport sys\nbase = set(sys.modules)\n"
             f"sys.argv = ['ociruntime', *{list(args)!r}]\n"
             "from ociruntime.cli.main import main\nrc = main()\nsys.stdout.flush()\n"
             f"with open({str(out)!r}, 'w') as f:\n"
             "    f.write(str(rc) + '\\n' + '\\n'.join(sorted(set(sys.modules) - base)))\n")
    # Files, not pipes: a created init keeps the stdio it was given.
    with open(tmp / "probe.log", "ab") as log:
        subprocess.run([*interp, "-c", probe], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                       check=True, timeout=60)
    rc, *mods = out.read_text().splitlines()
    assert rc == "0", (args, (tmp / "probe.log").read_text())
    return set(mods)


def _hot_violations(mods: set[str]) -> list[str]:
    bad = []
    for m in sorted(mods):
        if m.startswith("ociruntime"):
            if m.startswith("ociruntime.lifecycle.") and m not in HOT_LIFECYCLE:
                bad.append(m)
            elif m not in HOT_OURS_EXACT and not m.startswith(HOT_OURS_PREFIXES):
                bad.append(m)
        elif m not in HOT_STDLIB:
            bad.append(m)
    return bad


def test_hot_commands_import_only_their_allow_list(tmp_path: Path, bundle: BundleFactory) -> None:
    b = bundle(["sleep", "1000"])
    root = tmp_path / "root"
    cid = new_id("imp")
    g = ["--root", str(root)]
    found: dict[str, set[str]] = {}
    found["create"] = modules_of(tmp_path, *g, "create", "--bundle", str(b), cid)
    try:
        found["state (created)"] = modules_of(tmp_path, *g, "state", cid)
        found["start"] = modules_of(tmp_path, *g, "start", cid)
        found["state (running)"] = modules_of(tmp_path, *g, "state", cid)
        found["exec"] = modules_of(tmp_path, *g, "exec", cid, "/bin/true")
        found["kill"] = modules_of(tmp_path, *g, "kill", cid, "KILL")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b'"stopped"' not in subprocess.run(
                [*runtime_cmd(), *g, "state", cid], capture_output=True).stdout:
            time.sleep(0.01)
        found["delete"] = modules_of(tmp_path, *g, "delete", cid)
    finally:
        subprocess.run([*runtime_cmd(), *g, "delete", "--force", cid], capture_output=True)
    run_bundle = bundle(["true"])
    found["run"] = modules_of(tmp_path, *g, "run", "--bundle", str(run_bundle), new_id("imprun"))
    # Both checks per command: the allow-list of the hot ones, and NEVER for all.
    problems = {k: sorted(v & NEVER) for k, v in found.items()}
    for k, v in found.items():
        if k.split()[0] in ("state", "start", "kill", "delete"):
            problems[k] += _hot_violations(v)
    assert not {k: v for k, v in problems.items() if v}, problems
    # The guards above are only worth something if the probe sees imports at all.
    assert "ociruntime.state.store" in found["delete"]
    assert "ociruntime.init.stage1" in found["create"]


@pytest.mark.parametrize("mod", ["json", "re", "typing"])
def test_the_probe_notices_a_forbidden_import(tmp_path: Path, mod: str) -> None:
    # The same probe with `mod` imported inside the measured window must report it.
    interp, setup = _launcher()
    out = tmp_path / "mods"
    probe = (f"{setup}\nimport sys\nbase = set(sys.modules)\nimport {mod}\n"
             f"with open({str(out)!r}, 'w') as f:\n"
             f"    f.write('\\n'.join(set(sys.modules) - base) if {mod!r} not in base else 'preloaded')\n")
    subprocess.run([*interp, "-c", probe], check=True, capture_output=True)
    mods = set(out.read_text().splitlines())
    if mods == {"preloaded"}:
        pytest.skip(f"{mod} is loaded at start-up in this interpreter mode (site): test the launcher")
    assert mod in mods
    assert _hot_violations(mods)
