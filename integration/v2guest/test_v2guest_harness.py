"""Host-side checks of the cgroup v2 guest harness (run.py) that need no qemu."""

from __future__ import annotations

import importlib.util
import lzma
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
