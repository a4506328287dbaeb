"""`kamal-secure harden --trust-ca` against real sshd hosts: the CA trusted and a login with a
certificate alone proven, or the host left as it was; `--remove-static-keys` only after that
proof. At every point each host keeps a working way in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testing.harden import (
    DROPIN,
    KEPT,
    STATE,
    assert_back_to_previous,
    eventually,
    harden,
    key_host,
    offered,
)
from testing.live import host_project, keys_file, logs_in
from testing.sshd import DEPLOY_USER, Client, Host, Lab, keygen, wait_sessions_done

pytestmark = pytest.mark.sshd
CA_FILE = "kamal-secure-ca.pub"  # in the host's /etc/ssh
PRINCIPALS = f"kamal-secure-principals/{DEPLOY_USER}"


def ca(client: Client, name: str = "kamal_ca") -> Path:
    """A CA key pair in the client's ~/.ssh; returns the .pub."""
    keygen(client.home / ".ssh" / name, "kamal-ca")
    return client.home / ".ssh" / f"{name}.pub"


def certified(client: Client, ca_pub: Path, where: Path) -> Path:
    """A copy of the deploy key with a certificate beside it (ssh-keygen -s), for the
    OpenSSH client."""
    where.mkdir(mode=0o700, exist_ok=True)
    copy = where / "certified"
    shutil.copy(client.key, copy)
    copy.chmod(0o600)
    shutil.copy(f"{client.key}.pub", f"{copy}.pub")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca_pub.with_suffix("")), "-I", "test",
                    "-n", DEPLOY_USER, "-V", "+10m", f"{copy}.pub"], check=True)
    return copy


def untouched(host: Host, client: Client) -> None:
    """Nothing of --trust-ca on the host, and the deploy key still logs in."""
    for relative in (DROPIN, CA_FILE, PRINCIPALS, STATE):
        assert not (host.etc / relative).exists(), relative
    assert keys_file(host).read_text() == KEPT + client.public + "\n"
    assert logs_in(client.key, host, client)


def test_trusts_the_ca_and_a_certificate_alone_logs_in(lab: Lab, client: Client,
                                                       tmp_path: Path) -> None:
    host = key_host(lab, client)
    ca_pub = ca(client)
    app = host_project(tmp_path / "app", client, [host.addr])
    dry = harden(app, client, "--dry-run", "--trust-ca", str(ca_pub), "--remove-static-keys")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert f"/etc/ssh/kamal-secure-principals/{DEPLOY_USER}: {DEPLOY_USER}\n" in dry.stdout
    assert "then the deploy key leaves authorized_keys" in dry.stdout
    untouched(host, client)
    done = harden(app, client, "--yes", "--trust-ca", str(ca_pub), "--rollback-after", "10")
    assert done.code == 0, done.stdout + done.stderr
    assert "a new login with a certificate alone works" in done.stdout
    assert (host.etc / CA_FILE).read_text() == " ".join(ca_pub.read_text().split()[:2]) + "\n"
    assert (host.etc / PRINCIPALS).read_text() == f"{DEPLOY_USER}\n"
    dropin = (host.etc / DROPIN).read_text()
    assert "TrustedUserCAKeys /etc/ssh/kamal-secure-ca.pub" in dropin
    assert "AuthorizedPrincipalsFile /etc/ssh/kamal-secure-principals/%u" in dropin
    assert not (host.etc / STATE).exists()
    wait_sessions_done(host)
    again = harden(app, client, "--yes", "--trust-ca", str(ca_pub))
    assert again.code == 0, again.stdout + again.stderr
    assert "already hardened (unchanged)" in again.stdout
    # The static key goes (by hand here): the certificate alone still logs in.
    keys_file(host).write_text("")
    assert not logs_in(client.key, host, client)
    assert logs_in(certified(client, ca_pub, tmp_path / "cert"), host, client)


def test_remove_static_keys_after_the_proof(lab: Lab, client: Client, tmp_path: Path) -> None:
    host = key_host(lab, client)
    ca_pub = ca(client)
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--trust-ca", str(ca_pub), "--remove-static-keys",
                  "--rollback-after", "10")
    assert done.code == 0, done.stdout + done.stderr
    assert "the deploy key removed from authorized_keys" in done.stdout
    assert keys_file(host).read_text() == KEPT
    assert not logs_in(client.key, host, client)
    assert logs_in(certified(client, ca_pub, tmp_path / "cert"), host, client)
    wait_sessions_done(host)
    assert not (host.etc / STATE).exists()
    # run again with no certificate on disk: harden logs in with the one it mints
    assert not (client.key.parent / f"{client.key.name}-cert.pub").exists()
    again = harden(app, client, "--yes", "--trust-ca", str(ca_pub), "--remove-static-keys",
                   "--rollback-after", "10")
    assert again.code == 0, again.stdout + again.stderr
    assert "already hardened (unchanged)" in again.stdout
    assert "the deploy key was not in authorized_keys" in again.stdout


def test_a_ca_that_sshd_rejects_is_reverted_and_the_key_stays(lab: Lab, client: Client,
                                                             tmp_path: Path) -> None:
    # This sshd accepts certificates signed with RSA only: our ed25519 CA passes `sshd -t`
    # and the reload, and then no certificate of it logs in.
    host = key_host(lab, client, "CASignatureAlgorithms rsa-sha2-512,rsa-sha2-256\n")
    ca_pub = ca(client)
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--trust-ca", str(ca_pub), "--remove-static-keys",
                  "--rollback-after", "10")
    assert done.code == 3, done.stdout + done.stderr
    assert "reverted: a new login with a certificate alone failed" in done.stdout
    untouched(host, client)
    assert eventually(lambda: "password" in (offered(host) or ()))


def test_an_sshd_that_rejects_the_settings_changes_nothing(lab: Lab, client: Client,
                                                          tmp_path: Path) -> None:
    """As an sshd too old for a keyword: `sshd -t` fails, every file goes back."""
    host = key_host(lab, client)
    host.write("sshd_config.d/10-broken.conf", "NoSuchKeyword yes\n")
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--trust-ca", str(ca(client)), "--remove-static-keys")
    assert done.code == 3, done.stdout + done.stderr
    assert "`sshd -t` rejected the result, nothing changed" in done.stdout
    untouched(host, client)


def test_a_garbage_or_foreign_ca_is_refused_before_any_host(lab: Lab, client: Client,
                                                           tmp_path: Path) -> None:
    host = key_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    garbage = client.home / ".ssh" / "garbage.pub"
    garbage.write_text("ssh-ed25519 not-base64!!\n")
    refused = harden(app, client, "--yes", "--trust-ca", str(garbage))
    assert refused.code == 2, refused.stdout + refused.stderr
    assert "not base64" in refused.stderr
    ours, other = ca(client), ca(client, "other_ca")
    shutil.copy(other, ours)  # the .pub names another CA than the key beside it
    foreign = harden(app, client, "--yes", "--trust-ca", str(ours))
    assert foreign.code == 2, foreign.stdout + foreign.stderr
    assert "is another CA's key" in foreign.stderr
    alone = harden(app, client, "--yes", "--remove-static-keys")
    assert alone.code == 2
    assert "--remove-static-keys needs --trust-ca" in alone.stderr
    untouched(host, client)


@pytest.mark.parametrize("stage", ["armed", "written", "reloaded", "proven"])
def test_killed_at_any_stage_the_host_restores_itself(stage: str, lab: Lab, client: Client,
                                                      tmp_path: Path) -> None:
    host = key_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    killed = harden(app, client, "--yes", "--trust-ca", str(ca(client)), "--remove-static-keys",
                    "--rollback-after", "3", crash=f"harden-{stage}")
    assert killed.code == 99, killed.stdout + killed.stderr
    assert_back_to_previous(host, client)
    untouched(host, client)


def test_killed_while_trusting_a_new_ca_the_old_one_comes_back(lab: Lab, client: Client,
                                                               tmp_path: Path) -> None:
    host = key_host(lab, client)
    first, second = ca(client), ca(client, "new_ca")
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--trust-ca", str(first), "--rollback-after", "10")
    assert done.code == 0, done.stdout + done.stderr
    before = {p: (host.etc / p).read_text() for p in (DROPIN, CA_FILE, PRINCIPALS)}
    killed = harden(app, client, "--yes", "--trust-ca", str(second), "--rollback-after", "3",
                    crash="harden-reloaded")
    assert killed.code == 99, killed.stdout + killed.stderr
    assert eventually(lambda: not (host.etc / STATE).exists()), "the rollback never ran"
    wait_sessions_done(host)
    assert {p: (host.etc / p).read_text() for p in before} == before
    keys_file(host).write_text("")  # the first CA's certificate alone logs in again
    assert eventually(lambda: logs_in(certified(client, first, tmp_path / "c1"), host, client))
    assert not logs_in(certified(client, second, tmp_path / "c2"), host, client)


def test_killed_after_removing_the_key_a_certificate_still_logs_in(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    host = key_host(lab, client)
    ca_pub = ca(client)
    app = host_project(tmp_path / "app", client, [host.addr])
    killed = harden(app, client, "--yes", "--trust-ca", str(ca_pub), "--remove-static-keys",
                    "--rollback-after", "3", crash="harden-unkeyed")
    assert killed.code == 99, killed.stdout + killed.stderr
    wait_sessions_done(host)
    assert not (host.etc / STATE).exists()  # the switch was cancelled after the proof
    assert keys_file(host).read_text() == KEPT
    assert logs_in(certified(client, ca_pub, tmp_path / "cert"), host, client)


def test_a_genuinely_old_sshd_is_hardened_with_what_it_knows(
        lab: Lab, client: Client, tmp_path: Path, old_sshd: Path) -> None:
    """OpenSSH 8.4 (Debian 11): it rejects sntrup761x25519 (and with it a drop-in naming
    it), and its KbdInteractiveAuthentication does not turn keyboard-interactive off. The
    drop-in is narrowed to what this sshd knows, keyboard-interactive and passwords are no
    longer offered, and a certificate alone logs in; the key stays until it is proven."""
    host = key_host(lab, client, old=True)
    assert {"password", "keyboard-interactive"} <= set(offered(host) or ())
    ca_pub = ca(client)
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--trust-ca", str(ca_pub), "--remove-static-keys",
                  "--rollback-after", "20")
    assert done.code == 0, done.stdout + done.stderr
    shown = " ".join(done.stdout.split())
    assert "does not know sntrup761x25519-sha512@openssh.com: left out" in shown, shown
    assert "the deploy key removed from authorized_keys" in shown, shown
    dropin = (host.etc / DROPIN).read_text()
    assert "sntrup761x25519" not in dropin
    assert "ChallengeResponseAuthentication no" in dropin
    assert "ecdh-sha2-nistp256" in dropin  # Kamal's net-ssh still has a key exchange
    assert set(offered(host) or ("none",)) == {"publickey"}
    assert not logs_in(client.key, host, client)  # the key alone: no longer
    assert logs_in(certified(client, ca_pub, tmp_path / "cert"), host, client)
    wait_sessions_done(host)
    assert not (host.etc / STATE).exists()  # the switch was cancelled, not left armed
