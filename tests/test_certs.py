"""Deploy certificates: minted by remediate/certs.py, read back by the real ``ssh-keygen -L``
and accepted (or refused) by a real sshd that trusts the CA."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path

import pytest

from kamal_secure.errors import ConfigError, UsageError
from kamal_secure.gate.kamal import forget_secrets
from kamal_secure.policy.file import CertificatePolicy, load_policy
from kamal_secure.remediate import ca, certs
from testing.cli import clean_env
from testing.live import logs_in
from testing.sshd import (
    DEPLOY_USER,
    HARDENED,
    Client,
    Lab,
    fingerprint,
    keygen,
    listed,
    next_addr,
)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
KEY_ID = certs.key_id("alice", "0123456789abcdef0123", "deploy -d production")


@pytest.fixture
def ca_key(tmp_path: Path) -> Path:
    path = tmp_path / "cas" / "kamal_ca"
    ca.init(path, cwd=tmp_path)
    return path


@pytest.fixture
def deploy_key(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "deploy"
    keygen(key)
    return key


def pub(key: Path) -> str:
    return key.with_name(key.name + ".pub").read_text()


def mint_to(key: Path, ca_key: Path, *, principal: str = DEPLOY_USER, validity: int = 15,
            serial: int | None = None, source_address: tuple[str, ...] | None = None,
            pty: bool = False, now: dt.datetime = NOW) -> Path:
    cert = certs.mint(certs.CaSource(path=ca_key), pub(key), principal, validity, KEY_ID,
                      certs.serial_now(NOW) if serial is None else serial, source_address,
                      pty, now)
    return certs.write_cert(key, cert)


def test_a_minted_certificate_as_ssh_keygen_reads_it(ca_key: Path, deploy_key: Path) -> None:
    path = mint_to(deploy_key, ca_key)
    assert path == deploy_key.with_name("deploy-cert.pub")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    got = listed(path)
    assert got["Type"] == ["ssh-ed25519-cert-v01@openssh.com user certificate"]
    assert got["Signing CA"][0].split()[1] == fingerprint(ca_key)
    assert got["Public key"][0].split()[1] == fingerprint(deploy_key)
    assert got["Key ID"] == ['"kamal-secure:alice@0123456789ab:deploy -d production"']
    assert got["Serial"] == [str(int(NOW.timestamp() * 1000))]
    start = (NOW - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (NOW + dt.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S")
    assert got["Valid"] == [f"from {start} to {end}"]
    assert got["Principals"] == [DEPLOY_USER]
    assert got["Critical Options"] == ["(none)"]
    assert got["Extensions"] == ["(none)"]  # no pty, no forwarding of any kind, no user rc


def test_pty_and_source_address_when_asked(ca_key: Path, deploy_key: Path) -> None:
    got = listed(mint_to(deploy_key, ca_key, pty=True, validity=30,
                         source_address=("10.0.0.0/8", "192.0.2.7")))
    assert got["Extensions"] == ["permit-pty"]
    assert got["Critical Options"] == ["source-address 10.0.0.0/8,192.0.2.7"]
    end = (NOW + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    assert got["Valid"][0].endswith(f" to {end}")


def test_the_serial_grows(ca_key: Path, deploy_key: Path) -> None:
    first = int(listed(mint_to(deploy_key, ca_key, serial=certs.serial_now()))["Serial"][0])
    later = certs.serial_now(dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=5))
    second = int(listed(mint_to(deploy_key, ca_key, serial=later))["Serial"][0])
    assert second > first > int(NOW.timestamp() * 1000) - 1


def test_key_id_is_one_printable_line_with_our_marker() -> None:
    made = certs.key_id("bob\nroot", "", "deploy\t-d x\x1b[2J")
    assert made == "kamal-secure:bob?root@nocommit:deploy?-d x?[2J"
    assert len(certs.key_id("a", "b", "c" * 500)) == certs.MAX_KEY_ID


def test_refuses_to_overwrite_a_certificate_it_did_not_write(
        tmp_path: Path, ca_key: Path, deploy_key: Path) -> None:
    other_ca = tmp_path / "other_ca"
    keygen(other_ca)
    subprocess.run(["ssh-keygen", "-q", "-s", str(other_ca), "-I", "alice-laptop", "-n",
                    DEPLOY_USER, "-V", "+1h", str(pub_path(deploy_key))], check=True)
    theirs = certs.cert_path(deploy_key)
    before = theirs.read_bytes()
    with pytest.raises(UsageError, match="not written by kamal-secure"):
        mint_to(deploy_key, ca_key)
    assert theirs.read_bytes() == before
    theirs.write_text("not a certificate\n")
    with pytest.raises(UsageError, match="not written by kamal-secure"):
        mint_to(deploy_key, ca_key)
    theirs.unlink()
    ours = mint_to(deploy_key, ca_key).read_bytes()
    again = mint_to(deploy_key, ca_key, serial=certs.serial_now(NOW) + 1).read_bytes()
    assert again != ours  # our own certificate is replaced
    assert sorted(p.name for p in deploy_key.parent.iterdir()) == [
        "deploy", "deploy-cert.pub", "deploy.pub"]  # no temporary file left


def pub_path(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


def test_ca_from_an_environment_variable_is_read_once_and_dropped(
        ca_key: Path, deploy_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMAL_SSH_CA", ca_key.read_text())
    cert = certs.mint(certs.CaSource(env="KAMAL_SSH_CA"), pub(deploy_key), DEPLOY_USER, 15,
                      KEY_ID, certs.serial_now())
    assert "KAMAL_SSH_CA" not in os.environ  # nothing started later inherits it
    child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    assert "OPENSSH PRIVATE KEY" not in child
    path = certs.write_cert(deploy_key, cert)
    assert listed(path)["Signing CA"][0].split()[1] == fingerprint(ca_key)
    # held for this command only: the next one (cli.main forgets it) finds it unset
    forget_secrets()
    with pytest.raises(UsageError, match=r"\$KAMAL_SSH_CA is not set or empty"):
        certs.mint(certs.CaSource(env="KAMAL_SSH_CA"), pub(deploy_key), DEPLOY_USER, 15,
                   KEY_ID, 1)
    monkeypatch.setenv("KAMAL_SSH_CA", "not a key")
    with pytest.raises(UsageError, match=r"\$KAMAL_SSH_CA: not an OpenSSH private key"):
        certs.mint(certs.CaSource(env="KAMAL_SSH_CA"), pub(deploy_key), DEPLOY_USER, 15,
                   KEY_ID, 1)


def test_an_encrypted_ca_file_needs_its_passphrase(tmp_path: Path, deploy_key: Path) -> None:
    path = tmp_path / "enc" / "ca"
    ca.init(path, b"ca secret 17", cwd=tmp_path)
    with pytest.raises(UsageError, match="encrypted: give its passphrase"):
        certs.mint(certs.CaSource(path=path), pub(deploy_key), DEPLOY_USER, 15, KEY_ID, 1)
    with pytest.raises(UsageError, match="passphrase is wrong"):
        certs.mint(certs.CaSource(path=path, passphrase=b"nope"), pub(deploy_key),
                   DEPLOY_USER, 15, KEY_ID, 1)
    cert = certs.mint(certs.CaSource(path=path, passphrase=b"ca secret 17"), pub(deploy_key),
                      DEPLOY_USER, 15, KEY_ID, 1)
    assert listed(certs.write_cert(deploy_key, cert))["Serial"] == ["1"]


def test_refuses_what_cannot_be_a_certificate(ca_key: Path, deploy_key: Path) -> None:
    source = certs.CaSource(path=ca_key)
    with pytest.raises(UsageError, match="not an OpenSSH public key"):
        certs.mint(source, "ssh-ed25519 AAAAnope", DEPLOY_USER, 15, KEY_ID, 1)
    with pytest.raises(UsageError, match="does not start with"):
        certs.mint(source, pub(deploy_key), DEPLOY_USER, 15, "alice", 1)
    with pytest.raises(UsageError, match="at least 1"):
        certs.mint(source, pub(deploy_key), DEPLOY_USER, 0, KEY_ID, 1)
    with pytest.raises(UsageError, match="exactly one"):
        certs.mint(certs.CaSource(), pub(deploy_key), DEPLOY_USER, 15, KEY_ID, 1)
    assert not certs.cert_path(deploy_key).exists()


def test_a_certificate_that_expires_before_the_minimum_is_refused(
        ca_key: Path, deploy_key: Path) -> None:
    short = mint_to(deploy_key, ca_key, validity=3).read_bytes()
    with pytest.raises(UsageError, match="expires in 2 minutes, less than the policy's "
                       "minimum of 5"):
        certs.ensure_lasts(short, 5, now=NOW + dt.timedelta(seconds=30))
    certs.ensure_lasts(short, 2, now=NOW)  # 3 minutes left: enough for a minimum of 2
    fresh = mint_to(deploy_key, ca_key, validity=15).read_bytes()
    certs.ensure_lasts(fresh, 5, now=NOW)
    with pytest.raises(UsageError, match="expires in 0 minutes"):
        certs.ensure_lasts(fresh, 5, now=NOW + dt.timedelta(hours=2))  # long expired
    with pytest.raises(UsageError, match="cannot be read"):
        certs.ensure_lasts(pub(deploy_key).encode(), 5)


def test_a_real_sshd_that_trusts_the_ca_accepts_the_certificate_alone(
        lab: Lab, client: Client, ca_key: Path) -> None:
    host = lab.start(next_addr(), HARDENED + "TrustedUserCAKeys /etc/ssh/kamal_ca.pub\n",
                     files={"kamal_ca.pub": pub(ca_key)}, own_home=True)
    client.trust(host.known_line())
    assert not logs_in(client.key, host, client)  # the key is in no authorized_keys
    mint_to(client.key, ca_key, now=dt.datetime.now(dt.UTC))
    assert logs_in(client.key, host, client)
    assert KEY_ID in host.log()  # the key id is in the host's auth log
    mint_to(client.key, ca_key, now=dt.datetime.now(dt.UTC), source_address=("192.0.2.1",))
    assert not logs_in(client.key, host, client)  # from the wrong address
    mint_to(client.key, ca_key, now=dt.datetime.now(dt.UTC), principal="someone-else")
    assert not logs_in(client.key, host, client)


def test_the_policy_certificates_section(tmp_path: Path) -> None:
    path = tmp_path / "secure.yml"
    path.write_text("version: 1\n")
    assert load_policy(path).certificates == CertificatePolicy(15, 5, None, None)
    path.write_text("certificates:\n  validity: 30\n  minimum: 10\n"
                    "  source_address: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']\n"
                    "  ca: ~/cas/kamal_ca\n")
    got = load_policy(path).certificates
    assert got == CertificatePolicy(30, 10, ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32"),
                                    Path.home() / "cas" / "kamal_ca")
    path.write_text("certificates: {validity: 6}\n")  # the minimum stays at its default, 5
    assert load_policy(path).certificates == CertificatePolicy(6, 5, None, None)
    path.write_text("certificates: {validity: 4}\n")
    with pytest.raises(ConfigError, match=r"minimum \(5 minutes\) must be less than validity \(4"):
        load_policy(path)


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_ca_in_an_ssh_agent_signs_without_touching_disk(
        tmp_path: Path, deploy_key: Path, agent: str, kind: str) -> None:
    ca_key = tmp_path / "agent_ca" / "ca"
    keygen(ca_key, "agent-ca", kind=kind)
    ca_pub = pub_path(ca_key)
    source = certs.CaSource(agent=ca_pub)
    with pytest.raises(UsageError, match="is not in the ssh-agent"):
        certs.mint(source, pub(deploy_key), DEPLOY_USER, 15, KEY_ID, 7)
    subprocess.run(["ssh-add", "-q", str(ca_key)], check=True, capture_output=True,
                   env=clean_env({"SSH_AUTH_SOCK": agent}))
    expected = fingerprint(ca_key)
    ca_key.unlink()  # only the agent holds it now
    cert = certs.mint(source, pub(deploy_key), DEPLOY_USER, 15, KEY_ID, 7, ("10.1.0.0/16",),
                      pty=True, now=NOW)
    got = listed(certs.write_cert(deploy_key, cert))
    assert got["Signing CA"][0].split()[1] == expected
    assert got["Key ID"] == [f'"{KEY_ID}"']
    assert got["Serial"] == ["7"]
    assert got["Principals"] == [DEPLOY_USER]
    assert got["Critical Options"] == ["source-address 10.1.0.0/16"]
    assert got["Extensions"] == ["permit-pty"]
    if kind == "rsa":
        assert got["Signing CA"][0].endswith("(using rsa-sha2-512)")


def test_a_real_sshd_accepts_a_certificate_the_agent_signed(
        lab: Lab, client: Client, tmp_path: Path, agent: str) -> None:
    ca_key = tmp_path / "agent_ca" / "ca"
    keygen(ca_key, "agent-ca")
    subprocess.run(["ssh-add", "-q", str(ca_key)], check=True, capture_output=True,
                   env=clean_env({"SSH_AUTH_SOCK": agent}))
    host = lab.start(next_addr(), HARDENED + "TrustedUserCAKeys /etc/ssh/kamal_ca.pub\n",
                     files={"kamal_ca.pub": pub(ca_key)}, own_home=True)
    client.trust(host.known_line())
    ca_key.unlink()
    cert = certs.mint(certs.CaSource(agent=pub_path(ca_key)), client.public, DEPLOY_USER, 15,
                      KEY_ID, certs.serial_now())
    certs.write_cert(client.key, cert)
    assert logs_in(client.key, host, client)
