"""KS724-KS728 against a real sshd that trusts CAs (issue #17): the files TrustedUserCAKeys
and RevokedKeys name are read on the host, the project's CA comes from the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from kamal_secure.report.model import Finding, Severity
from testing.cli import run_cli
from testing.live import host_project, scan_hosts
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, keygen, next_addr
from testing.standin import run_ks

pytestmark = pytest.mark.sshd
CERT_RULES = {"KS724", "KS725", "KS726", "KS727", "KS728"}
TRUSTS = "TrustedUserCAKeys /etc/ssh/kamal_ca.pub\n"
READY = (HARDENED + TRUSTS + "AuthorizedPrincipalsFile /etc/ssh/principals/%u\n"
         "RevokedKeys /etc/ssh/revoked_keys\n")


def cert_findings(app: Path) -> dict[str, list[Finding]]:
    report = scan_hosts(app)
    assert report.problems == [], report.problems
    out: dict[str, list[Finding]] = {}
    for finding in report.findings:
        if finding.rule in CERT_RULES:
            out.setdefault(finding.rule, []).append(finding)
    return out


def project(tmp_path: Path, client: Client, addr: str, ca: Path) -> Path:
    app = host_project(tmp_path / "app", client, [addr])
    policy = app / ".kamal" / "secure.yml"
    policy.write_text(policy.read_text() + f"certificates:\n  ca: {ca}\n")
    return app


def test_a_host_trusting_another_ca_with_static_keys_left(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    ca = tmp_path / "cas" / "kamal_ca"
    ours = keygen(ca, "kamal-secure-ca:2026-01-02")
    theirs = keygen(tmp_path / "cas" / "corp_ca", "corp-ca")
    addr = next_addr()
    host = lab.start(addr, HARDENED + TRUSTS, authorized={DEPLOY_USER: client.public},
                     files={"kamal_ca.pub": ours + "\n" + theirs + "\n"}, own_home=True)
    client.trust(host.known_line())
    app = project(tmp_path, client, addr, ca)
    found = cert_findings(app)
    assert set(found) == {"KS725", "KS726", "KS727", "KS728"}, found
    assert "corp-ca" in found["KS725"][0].message
    assert "kamal-deploy:test" in found["KS726"][0].message
    assert found["KS728"][0].severity is Severity.LOW  # no RevokedKeys in certificate mode
    # the project's CA gone from the file: the certificate would be refused
    host.write("kamal_ca.pub", theirs + "\n")
    assert "KS724" in cert_findings(app)
    # key mode (no CA in the policy): only the principals file is asked for
    key_mode = host_project(tmp_path / "key-mode", client, [addr])
    assert set(cert_findings(key_mode)) == {"KS727"}


def test_a_host_ready_for_certificates(lab: Lab, client: Client, tmp_path: Path) -> None:
    ca = tmp_path / "cas" / "kamal_ca"
    ours = keygen(ca, "kamal-secure-ca:2026-01-02")
    addr = next_addr()
    host = lab.start(addr, READY, authorized={DEPLOY_USER: client.public},
                     files={"kamal_ca.pub": ours + "\n", "revoked_keys": "",
                            f"principals/{DEPLOY_USER}": DEPLOY_USER + "\n"}, own_home=True)
    client.trust(host.known_line())
    found = cert_findings(project(tmp_path, client, addr, ca))
    assert set(found) == {"KS726"}  # the static deploy key, until --remove-static-keys


def test_the_gate_judges_the_ca_it_took_from_the_environment(
        lab: Lab, client: Client, tmp_path: Path, standin_dir: Path, record: Path) -> None:
    """``KAMAL_SECURE_CA_ENV`` alone names the CA: the gate takes the key out of its
    environment to mint before its own live checks, and those checks still judge the host
    against that CA (a host that trusts another one beside it: KS725; the static key left:
    KS726). In key mode neither is judged (the test above)."""
    ca = tmp_path / "cas" / "kamal_ca"
    ours = keygen(ca, "kamal-secure-ca:2026-01-02")
    theirs = keygen(tmp_path / "cas" / "corp_ca", "corp-ca")
    addr = next_addr()
    host = lab.start(addr, READY, authorized={DEPLOY_USER: client.public},
                     files={"kamal_ca.pub": ours + "\n" + theirs + "\n", "revoked_keys": "",
                            f"principals/{DEPLOY_USER}": DEPLOY_USER + "\n"}, own_home=True)
    client.trust(host.known_line())
    app = host_project(tmp_path / "app", client, [addr])
    run = run_ks(["server", "exec", "whoami"], app, [standin_dir], record,
                 env={"HOME": str(client.home), "KAMAL_SECURE_OFFLINE": "0",
                      "KAMAL_SECURE_CA_ENV": "CI_DEPLOY_CA", "CI_DEPLOY_CA": ca.read_text()})
    assert run.code == 1, run.stderr
    assert run.record is None  # Kamal never started
    for shown in ("KS725", "corp-ca", "KS726"):
        assert shown in run.stderr, run.stderr
    assert "INCOMPLETE" not in run.stderr, run.stderr
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    assert not (client.key.parent / (client.key.name + "-cert.pub")).exists()  # refused


def test_the_gate_in_certificate_mode_on_a_host_that_does_not_trust_the_ca(
        lab: Lab, client: Client, tmp_path: Path, standin_dir: Path, record: Path) -> None:
    """The minted certificate is offered instead of the key (as Kamal's net-ssh does), so a
    host that trusts another CA cannot be checked: refused (exit 3), saying what to do."""
    ca = tmp_path / "cas" / "kamal_ca"
    keygen(ca, "kamal-secure-ca:2026-01-02")
    theirs = keygen(tmp_path / "cas" / "corp_ca", "corp-ca")
    addr = next_addr()
    host = lab.start(addr, READY, authorized={DEPLOY_USER: client.public},
                     files={"kamal_ca.pub": theirs + "\n", "revoked_keys": "",
                            f"principals/{DEPLOY_USER}": DEPLOY_USER + "\n"}, own_home=True)
    client.trust(host.known_line())
    app = host_project(tmp_path / "app", client, [addr])
    policy = app / ".kamal" / "secure.yml"
    policy.write_text(policy.read_text() + f"certificates:\n  ca: {ca}\n")
    run = run_ks(["server", "exec", "whoami"], app, [standin_dir], record,
                 env={"HOME": str(client.home), "KAMAL_SECURE_OFFLINE": "0"})
    assert run.code == 3, run.stderr
    assert run.record is None
    assert "KS804" in run.stderr
    assert "harden --trust-ca" in " ".join(run.stderr.split()), run.stderr


@pytest.mark.parametrize("where", ["policy", "environment"])
def test_scan_checks_a_certificate_only_host_with_a_certificate_in_memory(
        where: str, lab: Lab, client: Client, tmp_path: Path) -> None:
    """After `harden --remove-static-keys` only a certificate logs in: `scan` mints one
    for its own checks, holds it in memory (nothing is written beside the key) and checks
    the host; without a CA named it cannot log in (KS804)."""
    ca = tmp_path / "cas" / "kamal_ca"
    ours = keygen(ca, "kamal-secure-ca:2026-01-02")
    addr = next_addr()
    host = lab.start(addr, READY, authorized={DEPLOY_USER: ""},
                     files={"kamal_ca.pub": ours + "\n", "revoked_keys": "",
                            f"principals/{DEPLOY_USER}": DEPLOY_USER + "\n"}, own_home=True)
    client.trust(host.known_line())
    app = host_project(tmp_path / "app", client, [addr])
    env = {"HOME": str(client.home)}
    if where == "policy":
        policy = app / ".kamal" / "secure.yml"
        policy.write_text(policy.read_text() + f"certificates:\n  ca: {ca}\n")
    else:
        env.update(KAMAL_SECURE_CA_ENV="CI_DEPLOY_CA", CI_DEPLOY_CA=ca.read_text())
    scanned = run_cli(["scan", "--format", "json"], app, env)
    assert "KS804" not in scanned.stdout + scanned.stderr, scanned.stdout + scanned.stderr
    assert scanned.code in (0, 1), scanned.stdout + scanned.stderr  # 3: a host unchecked
    assert addr in scanned.stdout
    assert "KS724" not in scanned.stdout  # judged against this CA, which the host trusts
    assert "PRIVATE KEY" not in scanned.stdout + scanned.stderr
    assert not (client.key.parent / f"{client.key.name}-cert.pub").exists()
    assert ":scan (serial" in host.log()  # the key id sshd logged
    if where == "policy":  # the other commands that read the hosts log in the same way
        for command in (["doctor"], ["snapshot", "--approve"]):
            done = run_cli(command, app, env)
            assert "KS804" not in done.stdout + done.stderr, done.stdout + done.stderr
            assert done.code == 0, done.stdout + done.stderr
            assert f":{command[0]} (serial" in host.log()
        assert not (client.key.parent / f"{client.key.name}-cert.pub").exists()
    key_mode = run_cli(["scan", "--format", "json"], host_project(
        tmp_path / "key-mode", client, [addr]), {"HOME": str(client.home)})
    assert key_mode.code == 3
    assert "KS804" in key_mode.stdout + key_mode.stderr
