"""write_atomic: the one local writer (mode kept, through symlinks, whole or not at all)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kamal_secure.fileio import write_atomic


def test_keeps_the_mode_and_writes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "shared" / "deploy.yml"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "config" / "deploy.yml"
    link.parent.mkdir()
    link.symlink_to(real)
    write_atomic(link, "new\n")
    assert link.is_symlink()
    assert real.read_text() == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["deploy.yml"]


def test_new_file_mode_and_explicit_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "journal.json"
    write_atomic(path, b"{}\n", 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, "{}\n", 0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deploy.yml"
    path.write_text("old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["deploy.yml"]


def test_fsyncs_the_file_then_the_directory_and_writes_into_a_0600_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deploy.yml"
    path.write_text("old\n")
    path.chmod(0o644)
    synced: list[tuple[str, int, str]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        name = str(Path(f"/proc/self/fd/{fd}").readlink())
        content = "" if stat.S_ISDIR(st.st_mode) else Path(name).read_text()
        synced.append((name, stat.S_IMODE(st.st_mode), content))
        real_fsync(fd)

    real_fdopen = os.fdopen

    def opened(fd: int, *args: object, **kwargs: object) -> object:
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600, "the temp file starts private"
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(os, "fdopen", opened)
    write_atomic(path, "new\n")
    assert len(synced) == 2
    temp, directory = synced
    assert Path(temp[0]).parent == tmp_path
    assert Path(temp[0]).name.startswith(".deploy.yml.")
    assert temp[1:] == (0o644, "new\n")  # the temp file, whole, with its final mode
    assert directory[0] == str(tmp_path)  # then the directory, after the rename
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["deploy.yml"]


CRASH = """
import os, sys
from pathlib import Path
from kamal_secure.fileio import write_atomic
when = sys.argv[2]
real = os.fsync
def die(fd):
    if when == "file" or os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
        os._exit(9)  # the process dies: no cleanup, no exception handler
    real(fd)
os.fsync = die
write_atomic(Path(sys.argv[1]), "new\\n" * 100000)
"""


@pytest.mark.parametrize(("when", "expected"), [("file", "old\n"), ("dir", "new\n" * 100000)])
def test_a_process_killed_mid_write_leaves_old_or_new(tmp_path: Path, when: str,
                                                       expected: str) -> None:
    path = tmp_path / "secure-rotation.json"
    path.write_text("old\n")
    done = subprocess.run([sys.executable, "-c", CRASH, str(path), when], check=False)
    assert done.returncode == 9
    assert path.read_text() == expected


def test_killed_at_random_points_the_file_is_never_partial(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yml"
    old, new = "a" * 2_000_000, "b" * 2_000_000
    path.write_text(old)
    loop = ("import sys\nfrom pathlib import Path\nfrom kamal_secure.fileio import write_atomic\n"
            "p = Path(sys.argv[1])\nwhile True:\n"
            "    write_atomic(p, 'b' * 2_000_000)\n"
            "    write_atomic(p, 'a' * 2_000_000)\n")
    for delay in (0.05, 0.1, 0.15, 0.2, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", loop, str(path)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert path.read_text() in (old, new)
