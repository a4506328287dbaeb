"""Certificate mode in the gate (issue #17): when it is on, what it mints, and that it fails
closed. Through the fallback path (this Python stand-in kamal cannot be guarded); the
guarded path and the hooks with the real Kamal are in tests/e2e/test_certificates.py."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

import pytest

from kamal_secure.errors import UsageError
from kamal_secure.facts.keys import gather_ca
from kamal_secure.gate.certificate import ca_source, interactive_flag, needs_pty
from kamal_secure.remediate import ca
from kamal_secure.remediate.certs import CaSource
from testing.cli import clean_env, run_cli
from testing.project import SECURE_CONFIG
from testing.sshd import DEPLOY_USER, keygen
from testing.standin import Run, run_ks

CA_SECRET_ENV = "KAMAL_SSH_CA_FOR_TEST"


def test_certificate_mode_is_named_by_the_policy_or_the_environment() -> None:
    policy_ca = Path("/keys/ca")
    assert ca_source(None, {}) is None  # no CA named: the gate does what it always did
    assert ca_source(policy_ca, {}) == CaSource(path=policy_ca)
    assert ca_source(policy_ca, {"KAMAL_SECURE_CA_ENV": "CI_CA"}) == CaSource(env="CI_CA")
    assert ca_source(None, {"KAMAL_SECURE_CA_AGENT": "1"}) == CaSource(
        agent=Path("~/.ssh/kamal_ca.pub"))
    assert ca_source(policy_ca, {"KAMAL_SECURE_CA_AGENT": "1"}) == CaSource(
        agent=Path("/keys/ca.pub"))
    for bad in ({"KAMAL_SECURE_CA_ENV": "A", "KAMAL_SECURE_CA_AGENT": "1"},
                {"KAMAL_SECURE_CA_ENV": ""}, {"KAMAL_SECURE_CA_ENV": "A=secret"},
                {"KAMAL_SECURE_CA_AGENT": "yes"}):
        with pytest.raises(UsageError):
            ca_source(None, bad)
        with pytest.raises(UsageError):  # the checks decide as the gate does: one decision
            gather_ca(None, Path("/nonexistent"), bad)


def test_the_gate_takes_the_ca_out_of_the_environment_and_the_checks_still_know_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cas" / "kamal_ca"
    made = ca.init(path, cwd=tmp_path)
    monkeypatch.setenv(CA_SECRET_ENV, path.read_text())
    environ = {"KAMAL_SECURE_CA_ENV": CA_SECRET_ENV, CA_SECRET_ENV: path.read_text()}
    source = ca_source(None, environ)
    assert source is not None
    assert source.secret == path.read_bytes()
    assert CA_SECRET_ENV not in environ
    assert CA_SECRET_ENV not in os.environ
    assert "PRIVATE KEY" not in repr(source)
    assert "hunter2" not in repr(CaSource(path=path, passphrase=b"hunter2"))
    facts = gather_ca(None, tmp_path, environ)
    assert facts is not None
    assert facts.fingerprint == made.fingerprint


def test_a_pty_only_for_a_terminal() -> None:
    assert needs_pty(["console"], False)
    assert needs_pty(["app", "exec"], True)
    assert needs_pty(["accessory", "exec"], True)
    assert not needs_pty(["app", "exec"], False)
    assert not needs_pty(["deploy"], True)
    assert not needs_pty(["server", "exec"], False)
    assert interactive_flag(["app", "exec", "-i", "bash"])
    assert interactive_flag(["app", "exec", "--interactive", "bash"])
    assert not interactive_flag(["app", "exec", "--interactive=false", "bash"])
    assert not interactive_flag(["app", "exec", "bash", "--", "-i"])
    assert not interactive_flag(["server", "exec", "whoami"])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    keygen(home / ".ssh" / "kamal_deploy_key")
    return home


@pytest.fixture
def ca_key(tmp_path: Path) -> Path:
    path = tmp_path / "cas" / "kamal_ca"
    ca.init(path, cwd=tmp_path)
    return path


def app_with(root: Path, ca_path: Path | None, extra: str = "") -> Path:
    (root / "config").mkdir(parents=True)
    (root / ".kamal").mkdir()
    (root / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    if ca_path is not None:
        (root / ".kamal" / "secure.yml").write_text(
            f"certificates:\n  validity: 10\n  ca: {ca_path}\n{extra}")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    git = ["git", "-C", str(root), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return root


def listed(cert: Path) -> str:
    return subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], capture_output=True,
                          text=True, check=True, env=clean_env({"TZ": "UTC"})).stdout


def cert_of(home: Path) -> Path:
    return home / ".ssh" / "kamal_deploy_key-cert.pub"


def gate(args: list[str], app: Path, home: Path, standin_dir: Path, record: Path,
         **env: str) -> Run:
    return run_ks(args, app, [standin_dir], record, env={"HOME": str(home), "USER": "alice",
                                                         **env})


def test_the_gate_mints_before_kamal_starts(tmp_path: Path, home: Path, ca_key: Path,
                                            standin_dir: Path, record: Path) -> None:
    app = app_with(tmp_path / "app", ca_key)
    commit = subprocess.run(["git", "-C", str(app), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record)
    assert run.code == 0, run.stderr
    assert run.argv == [b"server", b"exec", b"whoami"]
    shown = listed(cert_of(home))
    assert f'Key ID: "kamal-secure:alice@{commit[:12]}:server exec"' in shown
    assert "Principals: \n                deploy\n" in shown  # ssh.user
    valid = re.search(r"Valid: from (\S+) to (\S+)", shown)
    assert valid is not None
    start, end = (dt.datetime.fromisoformat(t) for t in valid.groups())
    assert end - start == dt.timedelta(minutes=11)  # a minute in the past, validity: 10
    assert "Signing CA: ED25519" in shown
    assert "permit-pty" not in shown
    assert "Extensions: (none)" in shown
    assert "-----BEGIN" not in run.stdout + run.stderr  # the CA is never printed
    interactive = gate(["app", "exec", "-i", "bash"], app, home, standin_dir, record)
    assert interactive.code == 0, interactive.stderr
    assert "permit-pty" in listed(cert_of(home))


def test_a_ca_from_the_environment_is_never_kamals(tmp_path: Path, home: Path, ca_key: Path,
                                                  standin_dir: Path, record: Path) -> None:
    app = app_with(tmp_path / "app", None)
    secret = ca_key.read_text()
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record,
               KAMAL_SECURE_CA_ENV=CA_SECRET_ENV, **{CA_SECRET_ENV: secret})
    assert run.code == 0, run.stderr
    assert "kamal-secure:alice@" in listed(cert_of(home))
    assert run.record is not None
    env = run.record["env"]
    assert isinstance(env, dict)
    assert CA_SECRET_ENV not in env
    assert "KAMAL_SECURE_CA_ENV" not in env
    assert not any("PRIVATE KEY" in value for value in env.values())


def test_without_a_ca_nothing_is_minted(tmp_path: Path, home: Path, standin_dir: Path,
                                        record: Path) -> None:
    app = app_with(tmp_path / "app", None)
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record)
    assert run.code == 0, run.stderr
    assert not cert_of(home).exists()


def test_a_ca_in_the_ssh_agent(tmp_path: Path, home: Path, ca_key: Path, agent: str,
                               standin_dir: Path, record: Path) -> None:
    app = app_with(tmp_path / "app", ca_key, "  source_address: [10.1.0.0/16]\n")
    subprocess.run(["ssh-add", "-q", str(ca_key)], check=True, capture_output=True,
                   env=clean_env({"SSH_AUTH_SOCK": agent}))
    ca_key.unlink()  # only the agent holds it: the policy's path names its .pub
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record,
               KAMAL_SECURE_CA_AGENT="1", SSH_AUTH_SOCK=agent)
    assert run.code == 0, run.stderr
    shown = listed(cert_of(home))
    assert "source-address 10.1.0.0/16" in shown
    assert "kamal-secure:alice@" in shown


@pytest.mark.parametrize("case", ["missing-ca-file", "unset-env", "no-public-key"])
def test_refuses_and_never_starts_kamal_when_minting_fails(
        case: str, tmp_path: Path, home: Path, ca_key: Path, standin_dir: Path,
        record: Path) -> None:
    app = app_with(tmp_path / "app", tmp_path / "nowhere" if case == "missing-ca-file"
                  else ca_key)
    env = {"KAMAL_SECURE_CA_ENV": CA_SECRET_ENV} if case == "unset-env" else {}
    if case == "no-public-key":
        (home / ".ssh" / "kamal_deploy_key.pub").unlink()
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record, **env)
    assert run.code == 3, run.stderr
    assert "certificate mode: no certificate was minted" in run.stderr
    assert run.record is None  # kamal never started
    assert not cert_of(home).exists()


def test_refuses_to_replace_a_certificate_it_did_not_write(
        tmp_path: Path, home: Path, ca_key: Path, standin_dir: Path, record: Path) -> None:
    app = app_with(tmp_path / "app", ca_key)
    theirs = tmp_path / "their_ca"
    keygen(theirs)
    subprocess.run(["ssh-keygen", "-q", "-s", str(theirs), "-I", "ops-team", "-n", DEPLOY_USER,
                    str(home / ".ssh" / "kamal_deploy_key.pub")], check=True,
                   capture_output=True)
    before = cert_of(home).read_bytes()
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record)
    assert run.code == 3, run.stderr
    assert "not written by kamal-secure" in run.stderr
    assert run.record is None
    assert cert_of(home).read_bytes() == before


@pytest.mark.parametrize(("fail_on", "code"), [("low", 1), ("bogus", 2)])
def test_a_refused_command_leaves_no_certificate(fail_on: str, code: int, tmp_path: Path,
                                                 home: Path, ca_key: Path, standin_dir: Path,
                                                 record: Path) -> None:
    app = app_with(tmp_path / "app", ca_key)
    (app / "config" / "deploy.yml").write_text(SECURE_CONFIG.replace(
        "  forward_agent: false\n", "  forward_agent: true\n"))
    run = gate(["server", "exec", "whoami"], app, home, standin_dir, record,
               KAMAL_SECURE_FAIL_ON=fail_on)  # a finding, or a check that raises
    assert run.code == code, run.stderr
    assert run.record is None
    assert not cert_of(home).exists()



def test_no_process_the_gate_starts_sees_the_ca_key(tmp_path: Path, home: Path,
                                                    ca_key: Path) -> None:
    """A kamal that is a shell wrapper (rbenv, asdf, Docker): the gate probes it (`kamal
    version`), then runs it; neither run, nor anything else started, gets the CA key."""
    app = app_with(tmp_path / "app", None)
    bin_dir = tmp_path / "wrapper-bin"
    bin_dir.mkdir()
    log = tmp_path / "environments.log"
    wrapper = bin_dir / "kamal"
    wrapper.write_text(f'#!/bin/sh\nenv >> "{log}"\necho "-- $*" >> "{log}"\n')
    wrapper.chmod(0o755)
    done = run_cli(["server", "exec", "whoami"], app, {
        "HOME": str(home), "USER": "alice", "KAMAL_SECURE_OFFLINE": "1",
        "PATH": f"{bin_dir}:/usr/bin:/bin", "KAMAL_SECURE_CA_ENV": CA_SECRET_ENV,
        CA_SECRET_ENV: ca_key.read_text()})
    assert done.code == 0, done.stderr
    seen = log.read_text()
    assert "-- version" in seen  # the probe ran it
    assert "-- server exec whoami" in seen  # and then the command
    assert "PRIVATE KEY" not in seen
    assert not [line for line in seen.splitlines() if line.startswith(f"{CA_SECRET_ENV}=")]
    assert "kamal-secure:alice@" in listed(cert_of(home))  # minted all the same
