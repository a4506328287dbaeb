"""The CA key checks (KS612-KS615, certificate mode, #17) on real files made by ssh-keygen."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from kamal_secure.audit.static import run_static
from kamal_secure.facts.keys import gather_ca
from kamal_secure.policy.file import load_policy
from kamal_secure.report.model import Finding, Severity
from testing.project import SECURE_CONFIG
from testing.sshd import keygen

CA_RULES = {"KS612", "KS613", "KS614", "KS615"}
TODAY = dt.date.today().isoformat()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh").chmod(0o700)
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAMAL_SECURE_CA_ENV", "KAMAL_SECURE_CA_AGENT"):
        monkeypatch.delenv(name, raising=False)
    keygen(home / ".ssh" / "kamal_deploy_key", f"kamal-deploy:shop:{TODAY}")
    return home


def ca_at(path: Path, kind: str = "ed25519", *options: str, comment: str | None = None) -> Path:
    keygen(path, comment or f"kamal-secure-ca:{TODAY}", kind=kind, options=options)
    return path


def findings(root: Path, settings: dict[str, object]) -> list[Finding]:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    return [f for f in run_static("config/deploy.yml", None, root, settings).findings
            if f.rule in CA_RULES]


def rules(found: list[Finding]) -> set[str]:
    return {f.rule for f in found}


def test_a_ca_made_like_ca_init_is_clean(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca")
    assert findings(tmp_path / "app", {"ca": ca}) == []
    assert findings(tmp_path / "app", {}) == []  # key mode: no CA to check


def test_the_ca_inside_the_repository_is_critical(tmp_path: Path, home: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    ca = ca_at(repo / "secrets" / "kamal_ca")  # outside the project, inside its git work tree
    (finding,) = findings(repo / "app", {"ca": ca})
    assert finding.rule == "KS612"
    assert finding.severity is Severity.CRITICAL
    assert str(repo.resolve()) in finding.message
    assert finding.location.path == "certificates.ca"
    # no git: the project directory itself is the repository
    inside = ca_at(tmp_path / "plain" / ".kamal" / "kamal_ca")
    assert rules(findings(tmp_path / "plain", {"ca": inside})) == {"KS612"}
    # only the .pub in the repository (agent mode keeps no private key on disk): nothing
    inside.unlink()
    assert findings(tmp_path / "plain", {"ca": inside}) == []


@pytest.mark.parametrize(("mode", "who"), [(0o600, None), (0o400, None), (0o640, "its group"),
                                           (0o644, "everyone"), (0o604, "everyone")])
def test_the_ca_key_readable_by_others(mode: int, who: str | None, tmp_path: Path,
                                       home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca")
    ca.chmod(mode)
    found = findings(tmp_path / "app", {"ca": ca})
    if who is None:
        assert found == []
    else:
        (finding,) = found
        assert finding.rule == "KS613"
        assert f"{mode:04o}: {who}" in finding.message


def test_a_ca_that_is_not_ed25519(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca", "rsa", "-b", "3072")
    (finding,) = findings(tmp_path / "app", {"ca": ca})
    assert finding.rule == "KS614"
    assert "rsa 3072 bits" in finding.message
    ecdsa = ca_at(home / ".ssh" / "ecdsa_ca", "ecdsa")
    assert rules(findings(tmp_path / "app", {"ca": ecdsa})) == {"KS614"}


def test_an_old_ca_by_its_comment_and_the_policy_limit(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca", comment="kamal-secure-ca:2020-01-02")
    (finding,) = findings(tmp_path / "app", {"ca": ca})
    assert finding.rule == "KS615"
    assert "created 2020-01-02, from the key comment" in finding.message
    assert findings(tmp_path / "app", {"ca": ca, "ca_rotation_days": 100_000}) == []


def test_the_policy_file_names_the_ca_and_its_age_limit(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca", comment="kamal-secure-ca:2025-01-02")
    policy = tmp_path / "secure.yml"
    policy.write_text(f"certificates:\n  ca: {ca}\n  rotation_days: 30\n")
    settings = load_policy(policy).settings()
    assert settings["ca"] == ca
    assert rules(findings(tmp_path / "app", settings)) == {"KS615"}
    policy.write_text(f"certificates:\n  ca: {ca}\n")  # default: a year
    age = (dt.date.today() - dt.date(2025, 1, 2)).days
    assert ("KS615" in rules(findings(tmp_path / "app", load_policy(policy).settings()))) is (
        age > 365)


def test_the_ca_in_a_variable_and_its_fingerprint(tmp_path: Path, home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """CI: the CA key text in a variable (KAMAL_SECURE_CA_ENV names it): no file to check,
    its type still is; the fingerprint is the one ssh-keygen prints."""
    ca = ca_at(tmp_path / "ci" / "ca", "rsa", "-b", "3072")
    printed = subprocess.run(["ssh-keygen", "-lf", str(ca)], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    monkeypatch.setenv("KAMAL_SECURE_CA_ENV", "DEPLOY_CA")
    monkeypatch.setenv("DEPLOY_CA", ca.read_text())
    found = gather_ca(None, tmp_path / "app")
    assert found is not None
    assert found.key is None
    assert found.fingerprint == printed
    assert rules(findings(tmp_path / "app", {})) == {"KS614"}
    monkeypatch.delenv("KAMAL_SECURE_CA_ENV")
    file_ca = gather_ca(ca, tmp_path / "app")
    assert file_ca is not None
    assert file_ca.fingerprint == printed
