"""Host-side checks of the cgroup v2 guest harness (run.py) that need no qemu."""

from __future__ import annotations

import importlib.util
import lzma
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("v2guest_run", Path(__file__).with_name("run.py"))
assert _spec and _spec.loader
run = importlib.util.module_from_spec(_spec)
sys.modules["v2guest_run"] = run
_spec.loader.exec_module(run)


def fake_bzimage(payload: bytes, setup_sects: int = 3, payload_offset: int = 0x40) -> bytes:
    """A bzImage skeleton: boot header fields that extract_vmlinux reads, then the payload."""
    img = bytearray((setup_sects + 1) * 512 + payload_offset)
    img[0x1F1] = setup_sects
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", img, 0x248, payload_offset, len(payload))
    return bytes(img) + payload + b"\x00\x10\x00\x00"  # the kernel's appended size field


def test_extract_vmlinux_decompresses_the_xz_payload() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    assert run.extract_vmlinux(fake_bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ))) == elf


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"\0" * 4096, "no Linux boot protocol header"),
        (fake_bzimage(b"\x1f\x8b" + b"\0" * 64), "payload is not xz"),
        (fake_bzimage(lzma.compress(b"not an elf", format=lzma.FORMAT_XZ)), "not an ELF"),
    ],
)
def test_extract_vmlinux_refuses_other_input(image: bytes, message: str) -> None:
    with pytest.raises(run.HarnessError, match=message):
        run.extract_vmlinux(image)


def test_cpio_entries_read_back_by_busybox_cpio(tmp_path: Path) -> None:
    archive = b"".join([
        run._cpio_entry("bin", stat.S_IFDIR | 0o755, ino=1),
        run._cpio_entry("bin/busybox", stat.S_IFREG | 0o755, b"abc", ino=2),
        run._cpio_entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox", ino=3),
        run._cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), ino=4),
        run._cpio_entry("TRAILER!!!", 0),
    ])
    assert len(archive) % 4 == 0
    p = subprocess.run(["/bin/busybox", "cpio", "-t", "-v"], input=archive, capture_output=True, check=True)
    lines = p.stdout.decode().splitlines()
    assert [line.split()[-1] for line in lines] == ["bin", "bin/busybox", "busybox", "dev/console"]
    assert lines[0].startswith("drwxr-xr-x") and lines[1].startswith("-rwxr-xr-x")
    assert lines[2].startswith("lrwxrwxrwx") and "bin/sh -> busybox" in lines[2]
    assert lines[3].startswith("crw-------")
    # busybox does not list device numbers: read them from the newc header (rdevmajor, rdevminor).
    header = run._cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
    assert fields[1] == stat.S_IFCHR | 0o600 and fields[9:11] == [5, 1]


LOG_FAILED = """\
....F..x
=========================== short test summary info ============================
FAILED tests/test_cgroups.py::test_a - AssertionError: assert 1 == 2
ERROR integration/test_cgroups_v2.py::test_b - OSError
1 failed, 5 passed, 1 skipped, 1 xfailed, 1 error in 3.10s
"""


def test_summary_section_and_counts() -> None:
    shown, counts = run.summary(LOG_FAILED)
    assert shown[0].endswith("short test summary info ============================")
    assert shown[-1].startswith("1 failed, 5 passed")
    assert counts == {"failed": 1, "passed": 5, "skipped": 1, "xfailed": 1, "error": 1}
    shown, counts = run.summary("......\n6 passed, 2 xpassed in 1.00s\n")
    assert shown == ["6 passed, 2 xpassed in 1.00s"] and counts == {"passed": 6, "xpassed": 2}


def _out(tmp_path: Path, log: str, rc: int) -> Path:
    (tmp_path / "pytest.log").write_text(log)
    (tmp_path / "exit").write_text(f"{rc}\n")
    return tmp_path


def test_report_counts_errors_as_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.report(_out(tmp_path, LOG_FAILED, 1)) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "cgroupv2: 5 passed, 2 failed, 1 skipped"


def test_report_pass_and_no_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.report(_out(tmp_path, "...\n3 passed in 0.5s\n", 0)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "cgroupv2: 3 passed, 0 failed"
    # pytest's "no tests ran" (exit 5) is a failure of the stage, not a pass.
    assert run.report(_out(tmp_path, "\nno tests ran in 0.01s\n", 5)) == 1
    assert "pytest exited with status 5" in capsys.readouterr().out


def test_report_without_result_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(run.HarnessError, match="without an exit code"):
        run.report(tmp_path)
    (tmp_path / "guest-error.txt").write_text("Traceback: boom")
    with pytest.raises(run.HarnessError, match="boom"):
        run.report(tmp_path)


def test_accel_never_picks_a_paravirtual_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run.Path, "exists", lambda self: False)  # no kvm_intel / kvm_amd module
    assert run.accel() == ["-accel", "tcg,thread=multi", "-cpu", "max"]


def test_default_selection_is_relative_to_the_checkout() -> None:
    argv = run.pytest_argv([])
    assert argv[0] == str(run.REPO / ".venv" / "bin" / "python")
    assert "--basetemp=/v2guest-scratch/pytest" in argv  # not under /tmp: see run.py
    assert "integration/test_cgroups_v2.py" in argv and "tests/test_cgroups.py" in argv
    assert "tests/test_ebpf.py" in argv
    assert run.pytest_argv(["-x", "tests/test_cli_args.py"])[-2:] == ["-x", "tests/test_cli_args.py"]


# ---- systemd as PID 1 (--systemd) -------------------------------------------------------------

_gspec = importlib.util.spec_from_file_location("v2guest_guest", Path(__file__).with_name("guest.py"))
assert _gspec and _gspec.loader
guest = importlib.util.module_from_spec(_gspec)
sys.modules["v2guest_guest"] = guest
_gspec.loader.exec_module(guest)

OUT = Path("/build/out")


def test_default_cmdline_is_unchanged() -> None:
    assert run.kernel_cmdline(OUT) == (
        f"console=ttyS0 quiet panic=-1 cgroup_no_v1=all v2guest_repo={run.REPO} v2guest_out=/build/out")
    argv = run.qemu_argv(Path("/k"), Path("/k/initramfs.cpio"), OUT)
    assert argv[argv.index("-append") + 1] == run.kernel_cmdline(OUT)


def test_systemd_cmdlines() -> None:
    tail = ("systemd.unit=v2guest.target systemd.show_status=0 systemd.crash_reboot=1 "
            "sysctl.kernel.modprobe=/usr/lib/v2guest/modprobe v2guest_init=systemd "
            f"v2guest_repo={run.REPO} v2guest_out=/build/out")
    assert run.kernel_cmdline(OUT, "v2") == (
        f"console=ttyS0 quiet panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 {tail}")
    assert run.kernel_cmdline(OUT, "hybrid") == (
        "console=ttyS0 quiet panic=-1 systemd.unified_cgroup_hierarchy=0 "
        f"systemd.legacy_systemd_cgroup_controller=0 {tail}")
    argv = run.qemu_argv(Path("/k"), Path("/k/initramfs.cpio"), OUT, "hybrid")
    assert argv[argv.index("-append") + 1] == run.kernel_cmdline(OUT, "hybrid")


def test_request_env_names_the_systemd_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRUNTIME", "/usr/local/bin/ociruntime")
    assert run.request_env("cgroupv2") == {"OCIRUNTIME": "/usr/local/bin/ociruntime"}
    assert run.request_env("systemd-hybrid") == {"OCIRUNTIME": "/usr/local/bin/ociruntime",
                                                 "OCIRUNTIME_GUEST": "systemd-hybrid"}
    monkeypatch.delenv("OCIRUNTIME")
    assert run.request_env("systemd-v2") == {"OCIRUNTIME_GUEST": "systemd-v2"}


def test_systemd_default_selection() -> None:
    argv = run.pytest_argv([], systemd=True)
    n = len(run.SYSTEMD_TESTS)
    assert tuple(argv[-n:]) == run.SYSTEMD_TESTS and "integration/test_systemd_guest.py" in run.SYSTEMD_TESTS
    assert all((run.REPO / t).exists() for t in run.SYSTEMD_TESTS)
    # The rootless systemd driver (a user manager) runs in both systemd stages (it checks the
    # refusal on hybrid).
    assert "integration/test_rootless_systemd.py" in run.SYSTEMD_TESTS
    assert "--basetemp=/v2guest-scratch/pytest" in argv
    assert run.pytest_argv(["-x", "a.py"], systemd=True)[-2:] == ["-x", "a.py"]
    # Hybrid adds checkpoint/restore (mounts differ there); v2 has none of its own.
    hybrid = run.pytest_argv([], systemd=True, layout="hybrid")
    assert tuple(hybrid[-len(run.SYSTEMD_LAYOUT_TESTS["hybrid"]):]) == run.SYSTEMD_LAYOUT_TESTS["hybrid"]
    assert run.pytest_argv([], systemd=True, layout="v2") == argv
    assert all((run.REPO / t.split("::")[0]).exists() for t in run.SYSTEMD_LAYOUT_TESTS["hybrid"])


def test_base_env_is_guest_pys() -> None:
    assert run.BASE_ENV == guest.BASE_ENV


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("--service", "--service"),
        ("/a b/c", '"/a b/c"'),
        ("50%", "50%%"),
        ("$HOME", "$$HOME"),
        ("a $b", '"a $$b"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("", '""'),
    ],
)
def test_unit_word(word: str, quoted: str) -> None:
    assert run.unit_word(word) == quoted


def test_unit_env_and_refusals() -> None:
    assert run.unit_env("OCIRUNTIME", "/bin/oci") == 'Environment="OCIRUNTIME=/bin/oci"'
    assert run.unit_env("X", 'a "b" 5% \\ $y') == 'Environment="X=a \\"b\\" 5%% \\\\ $y"'
    for name, value in (("A B", "x"), ("1A", "x"), ("A", "x\ny")):
        with pytest.raises(run.HarnessError):
            run.unit_env(name, value)
    with pytest.raises(run.HarnessError):
        run.unit_word("a\nb")


def test_systemd_units_text() -> None:
    units = run.systemd_units(OUT, 600, {"OCIRUNTIME": "/usr/local/bin/ociruntime",
                                          "OCIRUNTIME_GUEST": "systemd-v2"})
    assert sorted(units) == ["dbus.service.d/v2guest.conf", "dbus.socket.d/v2guest.conf",
                             "v2guest-tests.service", "v2guest.target", "v2guest\\x2dscratch.mount"]
    target = units["v2guest.target"].splitlines()
    assert "Requires=v2guest-tests.service" in target
    assert "Wants=dbus.socket dbus.service systemd-journald.socket systemd-journald-dev-log.socket " \
           "systemd-journald.service" in target
    service = units["v2guest-tests.service"].splitlines()
    guest_py = run.HERE / "guest.py"
    for line in ("DefaultDependencies=no", "Type=exec", "Delegate=no", "SuccessAction=poweroff-force",
                 "FailureAction=poweroff-force", "TimeoutStartSec=570", "RuntimeMaxSec=570",
                 f"WorkingDirectory={run.REPO}", 'Environment="OCIRUNTIME=/usr/local/bin/ociruntime"',
                 'Environment="OCIRUNTIME_GUEST=systemd-v2"', 'Environment="TMPDIR=/v2guest-scratch"',
                 "RequiresMountsFor=/v2guest-scratch", "After=dbus.service",
                 f"ExecStart=/usr/bin/python3 -I {guest_py} --service /build/out"):
        assert line in service
    assert not [line for line in service if line.startswith("ExecStartPre=")]
    scratch = units[run.SCRATCH_UNIT].splitlines()
    assert "Where=/v2guest-scratch" in scratch and "Type=tmpfs" in scratch
    assert "Options=mode=1777,nosuid" in scratch  # as guest.py mounts it
    for name in ("dbus.socket.d/v2guest.conf", "dbus.service.d/v2guest.conf"):
        assert "DefaultDependencies=no" in units[name].splitlines()
    assert "RuntimeMaxSec=10" in run.systemd_units(OUT, 5, {})["v2guest-tests.service"]


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists(), reason="no systemd-analyze")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = run.systemd_units(tmp_path, 600, {"OCIRUNTIME_GUEST": "systemd-v2"})
    names = [n for n in units if "/" not in n]
    for name in names:
        (tmp_path / name).write_text(units[name])
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *(f"./{n}" for n in names)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


@pytest.mark.skipif(not Path("/usr/bin/systemd-escape").exists(), reason="no systemd-escape")
def test_scratch_unit_name() -> None:
    p = subprocess.run(["systemd-escape", "--path", "--suffix=mount", run.SCRATCH], capture_output=True,
                       text=True, check=True)
    assert p.stdout.strip() == run.SCRATCH_UNIT
    assert run.SCRATCH == guest.SCRATCH


def test_overlay_links(tmp_path: Path) -> None:
    kdir = tmp_path / "k"
    (kdir / "root/lib/modules/6.1.0-9-amd64").mkdir(parents=True)
    links = run.overlay_links(kdir, ["system-generators/systemd-fstab-generator"])
    assert links == {
        "usr/lib/modules/6.1.0-9-amd64": str(kdir / "root/lib/modules/6.1.0-9-amd64"),
        "usr/lib/v2guest/modprobe": "/bin/busybox",  # busybox picks its applet by this name
        "etc/systemd/system-generators/systemd-fstab-generator": "/dev/null",
    }
    assert run.MODPROBE.endswith("/modprobe")
    assert f"sysctl.kernel.modprobe={run.MODPROBE}" in run.SYSTEMD_OPTIONS


def test_generators_and_overlay(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gens = (("usr/lib/systemd/system-generators", ["systemd-fstab-generator", "postgresql-generator"]),
            ("etc/systemd/system-generators", ["local-generator"]),
            ("usr/lib/systemd/system-environment-generators", ["60-env"]))
    for d, names in gens:
        (root / d).mkdir(parents=True)
        for n in names:
            (root / d / n).write_text("#!/bin/sh\n")
    (root / "lib").symlink_to("usr/lib")  # merged /usr: the same names twice
    masked = run.generators(root)
    assert masked == ["system-environment-generators/60-env", "system-generators/local-generator",
                      "system-generators/postgresql-generator", "system-generators/systemd-fstab-generator"]
    out = tmp_path / "out"
    links = {f"etc/systemd/{name}": "/dev/null" for name in masked}
    run.write_overlay(out, {"v2guest.target": "[Unit]\n", "dbus.socket.d/v2guest.conf": "[Unit]\n"}, links)
    assert (out / "root/etc/systemd/system/v2guest.target").read_text() == "[Unit]\n"
    assert (out / "root/etc/systemd/system/dbus.socket.d/v2guest.conf").exists()
    assert os.readlink(out / "root/etc/systemd/system-generators/systemd-fstab-generator") == "/dev/null"
    assert os.readlink(out / "root/etc/systemd/system-environment-generators/60-env") == "/dev/null"


DUMP = """\
-> Unit v2guest.target:
\tDescription: v2guest
\tInactive Exit Timestamp: Thu 2026-12-03 03:40:01 UTC
-> Unit docker.service:
\tDescription: Docker Application Container Engine
\tInactive Exit Timestamp: n/a
-> Unit dbus.socket:
\tInactive Exit Timestamp: Thu 2026-12-03 03:40:01 UTC
"""
JOURNAL = ('{"UNIT":"x.scope","JOB_TYPE":"start"}\n{"UNIT":"y.service","JOB_TYPE":"stop"}\n'
           '{"MESSAGE":"x"}\nnot json\n')


def test_started_units() -> None:
    assert guest.started_units(DUMP, JOURNAL) == ["dbus.socket", "v2guest.target", "x.scope"]


def test_report_with_the_stage_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.report(_out(tmp_path, "...\n3 passed in 0.5s\n", 0), "systemd-hybrid") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "systemd-hybrid: 3 passed, 0 failed"


def test_systemd_lines() -> None:
    facts = {"system_state": "degraded", "uptime_at_start": 8.44, "failed_units": ["a.service"],
             "started_units": ["-.mount", "dbus.service", "docker.service", "v2guest.target", "x.scope"],
             "host_units_started": ["docker.service"]}
    assert run.systemd_lines(facts, "systemd-v2") == [
        "systemd-v2: system degraded, pytest started 8.4 s after boot; failed units: a.service",
        "systemd-v2: units started: dbus.service docker.service v2guest.target",
        "systemd-v2: this machine's enabled units started in the guest: docker.service",
    ]
    assert run.systemd_lines({}, "s")[0] == "s: system ?; failed units: none"
    assert run.systemd_lines({"facts_error": "Traceback...\nTimeoutExpired: x\n"}, "s")[-1] == (
        "s: recording the guest's units failed: TimeoutExpired: x")


def test_layout_needs_systemd(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--layout", "hybrid"])
    assert exc.value.code == 2 and "--layout needs --systemd" in capsys.readouterr().err
