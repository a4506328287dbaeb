"""Certificate mode (issue #17) with the real Kamal: a host that trusts only the CA (its
deploy user's authorized_keys is empty) lets Kamal in with the certificate the gate minted,
and with nothing else."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from kamal_secure.remediate import ca, certs
from testing.e2e import BIN, KAMAL_HARDENED, live_app, live_env, run
from testing.sshd import DEPLOY_USER, Client, Host, Lab, next_addr

pytestmark = [pytest.mark.e2e, pytest.mark.sshd]
TRUSTS_CA = KAMAL_HARDENED + "LogLevel VERBOSE\nTrustedUserCAKeys /etc/ssh/kamal_ca.pub\n"


def ca_host(lab: Lab, client: Client, ca_key: Path) -> Host:
    host = lab.start(next_addr(), TRUSTS_CA,
                     files={"kamal_ca.pub": ca_key.with_name("kamal_ca.pub").read_text()},
                     authorized={DEPLOY_USER: ""}, own_home=True)
    client.trust(host.known_line())
    return host


def head(app: Path) -> str:
    return subprocess.run(["git", "-C", str(app), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture
def ca_key(tmp_path: Path) -> Path:
    path = tmp_path / "cas" / "kamal_ca"
    ca.init(path, cwd=tmp_path)
    return path


def test_kamal_logs_in_with_the_certificate_the_gate_minted(
        lab: Lab, client: Client, tmp_path: Path, real_kamal: Path, ca_key: Path) -> None:
    host = ca_host(lab, client, ca_key)
    app = live_app(tmp_path / "app", client, host.addr)
    env = dict(live_env(real_kamal, client), USER="alice")
    cert = client.key.with_name(client.key.name + "-cert.pub")
    whoami = ["server", "exec", "whoami"]

    plain = run([str(real_kamal), *whoami], app, env)  # no certificate: the host says no
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert f"Authentication failed for user {DEPLOY_USER}@{host.addr}" in plain.stdout
    other = certs.mint(certs.CaSource(path=ca_key), client.public, "someone-else", 15,
                       certs.key_id("mallory", "", "server exec"), certs.serial_now())
    certs.write_cert(client.key, other)  # a certificate for another principal: no either
    wrong = run([str(real_kamal), *whoami], app, env)
    assert wrong.returncode == 1
    assert "Authentication failed" in wrong.stdout
    cert.unlink()

    uncertified = run([f"{BIN}/kamal-secure", *whoami], app, env)  # no CA named: no way in
    assert uncertified.returncode == 3  # the gate's own login is refused too (KS804)
    assert "KS804" in uncertified.stdout + uncertified.stderr

    secure = app / ".kamal" / "secure.yml"
    secure.write_text(secure.read_text() + f"certificates:\n  ca: {ca_key}\n")
    ok = run([f"{BIN}/kamal-secure", *whoami], app, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert DEPLOY_USER in ok.stdout  # the real Kamal ran whoami on the host
    assert "cannot be guarded" not in ok.stderr  # the guarded path: the verdict process minted
    key_id = f"kamal-secure:alice@{head(app)[:12]}:server exec"
    log = host.log()
    assert f'Accepted certificate ID "{key_id}"' in log
    # the gate's own check and Kamal, each with the certificate alone
    assert log.count(f"Accepted publickey for {DEPLOY_USER} ") == 2
    assert log.count(f"ID {key_id} (serial") == 2
    assert certs.parse(cert.read_bytes()).valid_before > dt.datetime.now(dt.UTC).timestamp()


def test_a_ca_from_the_environment_and_plain_kamal_with_our_hooks(
        lab: Lab, client: Client, tmp_path: Path, real_kamal: Path, ca_key: Path) -> None:
    host = ca_host(lab, client, ca_key)
    app = live_app(tmp_path / "app", client, host.addr)
    env = dict(live_env(real_kamal, client), USER="alice")
    whoami = ["server", "exec", "whoami"]
    from_ci = dict(env, KAMAL_SECURE_CA_ENV="KAMAL_SSH_CA", KAMAL_SSH_CA=ca_key.read_text())
    ok = run([f"{BIN}/kamal-secure", *whoami], app, from_ci)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert DEPLOY_USER in ok.stdout
    assert "PRIVATE KEY" not in ok.stdout + ok.stderr
    client.key.with_name(client.key.name + "-cert.pub").unlink()

    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    secure = app / ".kamal" / "secure.yml"
    secure.write_text(secure.read_text() + f"certificates:\n  ca: {ca_key}\n")
    plain = run([str(real_kamal), *whoami], app, env)  # our pre-connect hook mints
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert DEPLOY_USER in plain.stdout
    assert f'Accepted certificate ID "kamal-secure:alice@{head(app)[:12]}:server exec"' \
        in host.log()
