"""Deploy key checks on real files with real modes and owners, compared with real ssh-keygen."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamal_secure.audit.static import run_static
from kamal_secure.facts.keys import gather_ca
from kamal_secure.policy.file import load_policy
from kamal_secure.report.model import Finding, Severity
from testing.project import SECURE_CONFIG
from testing.sshd import keygen

CONFIG = SECURE_CONFIG.replace("~/.ssh/kamal_deploy_key", "{key}")


def key_at(path: Path, kind: str = "ed25519", *options: str,
           comment: str | None = None) -> Path:
    """A new key at ``path`` with a dated kamal-deploy comment unless told; returns ``path``."""
    keygen(path, comment or f"kamal-deploy:shop:{dt.date.today().isoformat()}", kind=kind,
           options=options)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh").chmod(0o700)
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAMAL_SECURE_CA_ENV", "KAMAL_SECURE_CA_AGENT"):  # a CA only when named
        monkeypatch.delenv(name, raising=False)
    return home


def findings(root: Path, key: str, settings: dict[str, object] | None = None) -> list[Finding]:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "deploy.yml").write_text(CONFIG.replace("{key}", key))
    return [f for f in run_static("config/deploy.yml", None, root, settings or {}).findings
            if f.rule.startswith("KS6")]


def rules(found: list[Finding]) -> set[str]:
    return {f.rule for f in found}


def test_secure_key_has_no_findings(tmp_path: Path, home: Path) -> None:
    key_at(home / ".ssh" / "deploy")
    assert findings(tmp_path, "~/.ssh/deploy") == []


def test_fingerprint_matches_ssh_keygen(tmp_path: Path, home: Path) -> None:
    from kamal_secure.facts.keys import gather

    for kind, extra in (("ed25519", ()), ("rsa", ("-b", "3072")), ("ecdsa", ())):
        key = key_at(home / ".ssh" / kind, kind, *extra)
        out = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                             check=True).stdout.split()
        facts = gather([str(key)], tmp_path, home)[0]
        assert facts.info is not None
        assert facts.info.fingerprint == out[1]
        assert facts.info.bits == int(out[0])
        assert facts.pub_info is not None
        assert facts.pub_info.fingerprint == out[1]


@pytest.mark.parametrize(("mode", "hit"), [(0o600, False), (0o400, False), (0o640, True),
                                            (0o644, True), (0o606, True)])
def test_key_mode(mode: int, hit: bool, tmp_path: Path, home: Path) -> None:
    key = key_at(home / ".ssh" / "deploy")
    key.chmod(mode)
    assert ("KS603" in rules(findings(tmp_path, str(key)))) is hit


def test_ssh_dir_and_parent_dirs(tmp_path: Path, home: Path) -> None:
    key = key_at(home / ".ssh" / "deploy")
    (home / ".ssh").chmod(0o755)
    assert rules(findings(tmp_path, "~/.ssh/deploy")) == {"KS606"}
    (home / ".ssh").chmod(0o777)
    found = rules(findings(tmp_path, "~/.ssh/deploy"))
    assert {"KS605", "KS606"} <= found
    (home / ".ssh").chmod(0o700)
    other = tmp_path / "shared"
    other.mkdir(mode=0o777)
    other.chmod(0o777)
    moved = key_at(other / "sub" / "deploy")
    assert "KS605" in rules(findings(tmp_path, str(moved)))
    assert key.exists()


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        assert os.environ.get("CI") != "true", "CI runs as root"
        pytest.skip("creating a second user needs root")
    name = "ksotheruser"
    subprocess.run(["userdel", name], capture_output=True, check=False)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    yield pwd.getpwnam(name)
    subprocess.run(["userdel", name], capture_output=True, check=False)


def test_key_owned_by_another_user(tmp_path: Path, home: Path,
                                   other_user: pwd.struct_passwd) -> None:
    key = key_at(home / ".ssh" / "deploy")
    os.chown(key, other_user.pw_uid, other_user.pw_gid)
    found = findings(tmp_path, str(key))
    assert "KS604" in rules(found)
    assert str(other_user.pw_uid) in next(f.message for f in found if f.rule == "KS604")


@pytest.mark.parametrize(("kind", "extra", "hit"), [
    ("rsa", ("-b", "2048"), True), ("rsa", ("-b", "3072"), False), ("dsa", (), True),
    ("ecdsa", ("-b", "384"), False), ("ed25519", (), False)])
def test_key_type_and_size(kind: str, extra: tuple[str, ...], hit: bool, tmp_path: Path,
                           home: Path) -> None:
    key = key_at(home / ".ssh" / f"k_{kind}", kind, *extra)
    assert ("KS607" in rules(findings(tmp_path, str(key)))) is hit


def test_default_identity_by_fingerprint_not_name(tmp_path: Path, home: Path) -> None:
    default = key_at(home / ".ssh" / "id_ed25519")
    copy = home / ".ssh" / "innocent_name"
    copy.write_bytes(default.read_bytes())
    copy.chmod(0o600)
    found = findings(tmp_path, str(copy))
    assert rules(found) == {"KS609", "KS608"}  # a copy without its .pub: low KS608 too
    assert "id_ed25519" in next(f.message for f in found if f.rule == "KS609")


def test_pub_for_another_key(tmp_path: Path, home: Path) -> None:
    key = key_at(home / ".ssh" / "deploy")
    other = key_at(home / ".ssh" / "other")
    Path(f"{key}.pub").write_bytes(Path(f"{other}.pub").read_bytes())
    found = [f for f in findings(tmp_path, str(key)) if f.rule == "KS608"]
    assert len(found) == 1
    assert "is another key" in found[0].message


def test_encrypted_key_is_info(tmp_path: Path, home: Path) -> None:
    key = home / ".ssh" / "enc"
    keygen(key, passphrase="pass phrase")
    found = findings(tmp_path, str(key))
    assert rules(found) == {"KS610"}
    Path(f"{key}.pub").unlink()
    assert "KS607" not in rules(findings(tmp_path, str(key)))  # type read from the key file


def test_age_from_comment_then_mtime(tmp_path: Path, home: Path) -> None:
    old = key_at(home / ".ssh" / "old", comment="kamal-deploy:shop:2020-01-01")
    found = [f for f in findings(tmp_path, str(old)) if f.rule == "KS611"]
    assert "from the key comment" in found[0].message
    assert findings(tmp_path, str(old), {"key_rotation_days": 10_000}) == []
    plain = key_at(home / ".ssh" / "plain", comment="me@laptop")
    stamp = (dt.datetime.now() - dt.timedelta(days=200)).timestamp()
    os.utime(plain, (stamp, stamp))
    found = [f for f in findings(tmp_path, str(plain)) if f.rule == "KS611"]
    assert "from the file mtime" in found[0].message


@pytest.mark.parametrize("case", ["directory", "device", "dangling", "missing", "not_a_key",
                                  "crlf"])
def test_bad_key_files_are_findings_not_crashes(case: str, tmp_path: Path, home: Path) -> None:
    ssh = home / ".ssh"
    target = {"directory": str(ssh), "device": "/dev/null", "missing": str(ssh / "nope")}
    if case == "dangling":
        (ssh / "link").symlink_to(ssh / "gone")
        target[case] = str(ssh / "link")
    if case == "not_a_key":
        pem = ssh / "cert.pem"
        pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        pem.chmod(0o600)
        target[case] = str(pem)
    if case == "crlf":
        key = key_at(ssh / "crlf")
        key.write_bytes(key.read_bytes().replace(b"\n", b"\r\n"))
        target[case] = str(key)
    found = rules(findings(tmp_path, target[case]))
    expected = {"directory": "KS601", "device": "KS601", "dangling": "KS601",
                "missing": "KS601", "not_a_key": "KS608"}.get(case)
    if expected:
        assert expected in found
    else:  # OpenSSH reads CRLF keys too: no finding, no crash
        assert "KS608" not in found


def test_mode_000_is_reported_even_for_root(tmp_path: Path, home: Path) -> None:
    key = key_at(home / ".ssh" / "deploy")
    key.chmod(0o000)
    found = [f for f in findings(tmp_path, str(key)) if f.rule == "KS603"]
    assert "mode 0000" in found[0].message


# The CA key file of certificate mode (KS612-KS615, #17)
CA_RULES = {"KS612", "KS613", "KS614", "KS615"}
TODAY = dt.date.today().isoformat()


def ca_at(path: Path, kind: str = "ed25519", *options: str, comment: str | None = None) -> Path:
    keygen(path, comment or f"kamal-secure-ca:{TODAY}", kind=kind, options=options)
    return path


def ca_findings(root: Path, home: Path, settings: dict[str, object]) -> list[Finding]:
    deploy = home / ".ssh" / "kamal_deploy_key"
    if not deploy.exists():
        key_at(deploy)
    return [f for f in findings(root, str(deploy), settings) if f.rule in CA_RULES]


def test_a_ca_made_like_ca_init_is_clean(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca")
    assert ca_findings(tmp_path / "app", home, {"ca": ca}) == []
    assert ca_findings(tmp_path / "app", home, {}) == []  # key mode: no CA to check


def test_the_ca_inside_the_repository_is_critical(tmp_path: Path, home: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    ca = ca_at(repo / "secrets" / "kamal_ca")  # outside the project, inside its git work tree
    (finding,) = ca_findings(repo / "app", home, {"ca": ca})
    assert finding.rule == "KS612"
    assert finding.severity is Severity.CRITICAL
    assert str(repo.resolve()) in finding.message
    assert finding.location.path == "certificates.ca"
    # no git: the project directory itself is the repository
    inside = ca_at(tmp_path / "plain" / ".kamal" / "kamal_ca")
    assert rules(ca_findings(tmp_path / "plain", home, {"ca": inside})) == {"KS612"}
    # only the .pub in the repository (agent mode keeps no private key on disk): nothing
    inside.unlink()
    assert ca_findings(tmp_path / "plain", home, {"ca": inside}) == []


@pytest.mark.parametrize(("mode", "who"), [(0o600, None), (0o400, None), (0o640, "its group"),
                                           (0o644, "everyone"), (0o604, "everyone")])
def test_the_ca_key_readable_by_others(mode: int, who: str | None, tmp_path: Path,
                                       home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca")
    ca.chmod(mode)
    found = ca_findings(tmp_path / "app", home, {"ca": ca})
    if who is None:
        assert found == []
    else:
        (finding,) = found
        assert finding.rule == "KS613"
        assert f"{mode:04o}: {who}" in finding.message


def test_a_ca_that_is_not_ed25519(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca", "rsa", "-b", "3072")
    (finding,) = ca_findings(tmp_path / "app", home, {"ca": ca})
    assert finding.rule == "KS614"
    assert "rsa 3072 bits" in finding.message
    ecdsa = ca_at(home / ".ssh" / "ecdsa_ca", "ecdsa")
    assert rules(ca_findings(tmp_path / "app", home, {"ca": ecdsa})) == {"KS614"}


def test_an_old_ca_by_its_comment_and_the_policy_limit(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca", comment="kamal-secure-ca:2020-01-02")
    (finding,) = ca_findings(tmp_path / "app", home, {"ca": ca})
    assert finding.rule == "KS615"
    assert "created 2020-01-02, from the key comment" in finding.message
    assert ca_findings(tmp_path / "app", home, {"ca": ca, "ca_rotation_days": 100_000}) == []


def test_the_policy_file_names_the_ca_and_its_age_limit(tmp_path: Path, home: Path) -> None:
    ca = ca_at(home / ".ssh" / "kamal_ca", comment="kamal-secure-ca:2025-01-02")
    policy = tmp_path / "secure.yml"
    policy.write_text(f"certificates:\n  ca: {ca}\n  rotation_days: 30\n")
    settings = load_policy(policy).settings()
    assert settings["ca"] == ca
    assert rules(ca_findings(tmp_path / "app", home, settings)) == {"KS615"}
    policy.write_text(f"certificates:\n  ca: {ca}\n")  # default: a year
    age = (dt.date.today() - dt.date(2025, 1, 2)).days
    found = ca_findings(tmp_path / "app", home, load_policy(policy).settings())
    assert ("KS615" in rules(found)) is (age > 365)


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
    assert rules(ca_findings(tmp_path / "app", home, {})) == {"KS614"}
    monkeypatch.delenv("KAMAL_SECURE_CA_ENV")
    file_ca = gather_ca(ca, tmp_path / "app")
    assert file_ca is not None
    assert file_ca.fingerprint == printed
