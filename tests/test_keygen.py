"""`kamal-secure keygen` and `ca init` (the same engine): real keys checked with real
ssh-keygen, atomic writes, config edits; a CA key never inside the repository."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kamal_secure.config import erb
from kamal_secure.config.edit import set_ssh_key
from kamal_secure.config.load import parse_file
from kamal_secure.errors import UsageError
from kamal_secure.remediate import keygen
from testing.project import CORPUS
from testing.standin import run_ks


def ks(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Any:
    return run_ks(args, cwd, [], cwd / "rec.json", env=env)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def new_key(key: Path, comment: str) -> str:
    """Checks a key we made (0600 in a 0700 directory, ed25519, its .pub matches, the comment
    starts with ``comment``) with the real ssh-keygen; returns its fingerprint."""
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    listed = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed[0] == "256"
    assert listed[-1] == "(ED25519)"
    assert listed[2].startswith(comment)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert derived[:2] == Path(f"{key}.pub").read_text().split()[:2]
    return listed[1]


def test_creates_a_dedicated_ed25519_key(tmp_path: Path, home: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text("service: shop\nimage: a/b\n")
    run = ks(["keygen"], tmp_path)
    assert run.code == 0, run.stderr
    assert new_key(home / ".ssh" / "kamal_deploy_key", "kamal-deploy:shop:") in run.stdout
    assert 'keys: ["~/.ssh/kamal_deploy_key"]' in run.stdout  # the snippet
    assert "ssh-copy-id" not in run.stdout
    out = run.stdout  # the path to green, in the order that works
    assert out.index("1. kamal-secure authorize") < out.index("2. kamal-secure harden") < \
        out.index("3. kamal-secure pin-hosts")
    assert "PRIVATE KEY" not in run.stdout + run.stderr


def test_refuses_to_overwrite_and_force_keeps_a_backup(tmp_path: Path, home: Path) -> None:
    assert ks(["keygen", "--service", "x"], tmp_path).code == 0
    key = home / ".ssh" / "kamal_deploy_key"
    old = key.read_bytes()
    old_pub = Path(f"{key}.pub").read_bytes()
    again = ks(["keygen"], tmp_path)
    assert again.code == 2
    assert "exists already" in again.stderr
    assert "--path ~/.ssh/kamal_deploy_key_app" in again.stderr  # its own key, not --force
    assert key.read_bytes() == old
    forced = ks(["keygen", "--force"], tmp_path)
    assert forced.code == 0
    assert key.read_bytes() != old
    backups = sorted(key.parent.glob("kamal_deploy_key*.bak-*"))
    assert [b.read_bytes() for b in backups] == [old_pub, old] or \
        [b.read_bytes() for b in backups] == [old, old_pub]


def test_passphrase_from_env(tmp_path: Path, home: Path) -> None:
    secret = "correct horse battery staple 42"
    run = ks(["keygen", "--path", str(tmp_path / "k" / "key"), "--passphrase-from-env", "KPW"],
             tmp_path, env={"KPW": secret})
    assert run.code == 0, run.stderr
    assert secret not in run.stdout + run.stderr
    key = tmp_path / "k" / "key"
    wrong = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(key)], capture_output=True,
                           check=False)
    assert wrong.returncode != 0
    right = subprocess.run(["ssh-keygen", "-y", "-P", secret, "-f", str(key)],
                           capture_output=True, check=False)
    assert right.returncode == 0
    missing = ks(["keygen", "--path", str(tmp_path / "k2"), "--passphrase-from-env", "NOPE"],
                 tmp_path)
    assert missing.code == 2


def test_write_config_edits_only_the_ssh_section(tmp_path: Path, home: Path) -> None:
    text = ("# my app\nservice: shop\nimage: 'acme/shop'\n\nssh:\n  user: deploy # who\n\n"
            "# the builder\nbuilder:\n  arch: amd64\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(text)
    run = ks(["keygen", "--write-config"], tmp_path)
    assert run.code == 0, run.stderr
    after = (tmp_path / "config" / "deploy.yml").read_text()
    assert after == text.replace(
        "  user: deploy # who\n",
        '  user: deploy # who\n  keys: ["~/.ssh/kamal_deploy_key"]\n  keys_only: true\n'
        "  forward_agent: false\n")
    assert "+  keys_only: true" in run.stdout
    scan = ks(["scan", "--offline", "--format", "json"], tmp_path)
    assert '"KS101"' not in scan.stdout
    assert '"KS6' not in scan.stdout


def test_seed_style_ssh_key_is_replaced() -> None:
    edit = set_ssh_key("service: a\nssh_key: ~/.ssh/id_rsa\nimage: b\n", "~/.ssh/k")
    assert edit.after == ('service: a\nssh:\n  keys: ["~/.ssh/k"]\n  keys_only: true\n'
                          "  forward_agent: false\nimage: b\n")


def test_erb_lines_survive_untouched() -> None:
    text = ("service: <%= ENV['SVC'] %>\n<% if ENV['X'] %>\nimage: a\n<% end %>\n"
            "ssh:\n  user: <%= ENV.fetch('U') %>\n")
    edit = set_ssh_key(text, "~/.ssh/k")
    assert edit.after.startswith(text)
    assert set_ssh_key(edit.after, "~/.ssh/k").changed is False


def _corpus_configs() -> list[Path]:
    if not CORPUS.is_dir():
        assert os.environ.get("CI") != "true", f"{CORPUS} must be beside the checkout in CI"
        return []
    return sorted(p for p in CORPUS.iterdir() if "deploy" in p.name and ".yml" in p.name
                  and "<%" not in p.read_text(errors="replace"))


@pytest.mark.parametrize("path", _corpus_configs(), ids=lambda p: p.name)
def test_corpus_round_trip(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    edit = set_ssh_key(text, "~/.ssh/kamal_deploy_key", path.name)
    target = tmp_path / "deploy.yml"
    target.write_text(edit.after)
    before = parse_file(path, path.parent).loaded.data
    after = parse_file(target, tmp_path).loaded.data
    assert {k: v for k, v in after.items() if k not in ("ssh", "ssh_key")} == \
        {k: v for k, v in before.items() if k not in ("ssh", "ssh_key")}
    assert after["ssh"]["keys"] == ["~/.ssh/kamal_deploy_key"]
    assert after["ssh"]["keys_only"] is True
    assert after["ssh"]["forward_agent"] is False
    old_ssh = before.get("ssh") or {}
    assert {k: v for k, v in after["ssh"].items() if k not in ("keys", "keys_only",
                                                              "forward_agent")} == \
        {k: v for k, v in old_ssh.items() if k not in ("keys", "keys_only", "forward_agent")}
    diff = edit.diff("d").splitlines()
    added = {ln[1:] for ln in diff if ln.startswith("+") and not ln.startswith("+++")}
    removed = [ln[1:] for ln in diff if ln.startswith("-") and not ln.startswith("---")
               and ln[1:] not in added]  # a last line that only gained its newline
    assert all("ssh" in ln or "keys" in ln or "forward_agent" in ln for ln in removed), removed
    assert not set_ssh_key(edit.after, "~/.ssh/kamal_deploy_key").changed
    assert erb.DYNAMIC not in edit.after


@pytest.mark.parametrize("fail_at", [1, 2])
def test_interrupted_keygen_never_leaves_a_half_written_key(
    fail_at: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "keys" / "deploy"
    keygen.create(key, "kamal-deploy:shop:2026-01-01")
    old = key.read_bytes()
    calls = {"n": 0}
    real_replace = Path.replace

    def flaky(self: Path, target: Any) -> Path:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError(28, "No space left on device")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", flaky)
    with pytest.raises(OSError, match="No space"):
        keygen.create(key, "kamal-deploy:shop:2026-02-02", force=True)
    monkeypatch.undo()
    assert key.read_bytes() == old  # the private key is the old one, whole
    assert not [p.name for p in key.parent.iterdir() if p.name.startswith(".")], \
        "temporary files cleaned up"
    listed = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, check=False)
    assert listed.returncode == 0


def test_keygen_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="exists already"):
        keygen.create(tmp_path, "c")


# `kamal-secure ca init`: the CA key, made by keygen's engine

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
    assert f"Fingerprint: {new_key(key, 'kamal-secure-ca:')}\n" in run.stdout
    public = Path(f"{key}.pub").read_text().strip()
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
