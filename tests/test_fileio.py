"""write_atomic: the one local writer (mode kept, through symlinks, whole or not at all)."""

from __future__ import annotations

import os
import stat
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
