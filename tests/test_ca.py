"""`kamal-secure ca init`: a real CA key checked with real ssh-keygen; never inside the repo."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testing.standin import run_ks


def ks(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Any:
    return run_ks(args, cwd, [], cwd / "rec.json", env=env)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "app"
    (repo / ".git").mkdir(parents=True)
    (repo / "config").mkdir()
    return repo


def test_init_writes_the_ca_outside_the_repo_and_prints_its_public_key(
        repo: Path, home: Path) -> None:
    run = ks(["ca", "init"], repo)
    assert run.code == 0, run.stderr
    key = home / ".ssh" / "kamal_ca"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    listed = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed[0] == "256"
    assert listed[-1] == "(ED25519)"
    assert listed[2].startswith("kamal-secure-ca:")
    assert f"Fingerprint: {listed[1]}\n" in run.stdout
    public = Path(f"{key}.pub").read_text().strip()
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert derived[:2] == public.split()[:2]
    assert f"\n{public}\n" in run.stdout
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    assert sorted(p.name for p in repo.iterdir()) == [".git", "config"]


def test_init_refuses_a_path_inside_the_git_repository(repo: Path, home: Path) -> None:
    for path in ("config/ca", str(repo / "ca"), "new/dir/ca"):
        run = ks(["ca", "init", "--path", path], repo / "config")
        assert run.code == 2, (path, run.stderr)
        assert "inside the git repository" in run.stderr
    assert sorted(p.name for p in repo.rglob("*")) == [".git", "config"]
    forced = ks(["ca", "init", "--path", "config/ca", "--force"], repo)
    assert forced.code == 0, forced.stderr
    assert stat.S_IMODE((repo / "config" / "ca").stat().st_mode) == 0o600


def test_init_refuses_to_replace_a_ca_and_force_keeps_a_backup(
        tmp_path: Path, home: Path) -> None:
    path = tmp_path / "cas" / "ca"
    assert ks(["ca", "init", "--path", str(path)], tmp_path).code == 0
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # we made it
    old = path.read_bytes()
    again = ks(["ca", "init", "--path", str(path)], tmp_path)
    assert again.code == 2
    assert "refusing to replace a CA key" in again.stderr
    assert path.read_bytes() == old
    forced = ks(["ca", "init", "--path", str(path), "--force"], tmp_path)
    assert forced.code == 0, forced.stderr
    assert path.read_bytes() != old
    assert old in [b.read_bytes() for b in path.parent.glob("ca.bak-*")]


def test_init_passphrase_comes_from_the_environment(tmp_path: Path, home: Path) -> None:
    secret = "ca passphrase 91 correct horse"
    path = tmp_path / "ca"
    run = ks(["ca", "init", "--path", str(path), "--passphrase-from-env", "CAPW"], tmp_path,
             env={"CAPW": secret})
    assert run.code == 0, run.stderr
    assert secret not in run.stdout + run.stderr
    wrong = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(path)],
                           capture_output=True, check=False)
    assert wrong.returncode != 0
    right = subprocess.run(["ssh-keygen", "-y", "-P", secret, "-f", str(path)],
                           capture_output=True, check=False)
    assert right.returncode == 0
    missing = ks(["ca", "init", "--path", str(tmp_path / "ca2"), "--passphrase-from-env",
                  "NOPE"], tmp_path)
    assert missing.code == 2
    assert "NOPE: the variable is not set or empty" in missing.stderr
    assert not (tmp_path / "ca2").exists()


def test_ca_needs_an_action(tmp_path: Path, home: Path) -> None:
    run = ks(["ca"], tmp_path)
    assert run.code == 2
    assert "kamal-secure ca" in run.stderr
    assert not (home / ".ssh").exists()
