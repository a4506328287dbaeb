"""Certificate mode (issue #17) with the real Kamal: a host that trusts only the CA (its
deploy user's authorized_keys is empty) lets Kamal in with the certificate the gate minted,
and with nothing else: not the key alone, not an expired certificate, not one for another
principal; `harden --trust-ca --remove-static-keys` takes a host there."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from kamal_secure.remediate import ca, certs
from testing.e2e import BIN, KAMAL_HARDENED, live_app, live_env, run
from testing.harden import key_host
from testing.live import keys_file
from testing.sshd import DEPLOY_USER, Client, Host, Lab, fingerprint, listed, next_addr

pytestmark = [pytest.mark.e2e, pytest.mark.sshd]
TRUSTS_CA = KAMAL_HARDENED + "LogLevel VERBOSE\nTrustedUserCAKeys /etc/ssh/kamal_ca.pub\n"
PRINCIPALS = "AuthorizedPrincipalsFile /etc/ssh/principals/%u\n"
WHOAMI = ["server", "exec", "whoami"]
NO_REGISTRY = "127.0.0.1:9"  # discard: nothing listens, the login fails without a lookup


def ca_host(lab: Lab, client: Client, ca_key: Path, principals: bool = False) -> Host:
    """A host that trusts the CA; the deploy user's authorized_keys is empty. ``principals``:
    sshd also wants the certificate's principal listed for the user (as `harden --trust-ca`
    sets it up)."""
    files = {"kamal_ca.pub": ca_key.with_name("kamal_ca.pub").read_text()}
    if principals:
        files[f"principals/{DEPLOY_USER}"] = f"{DEPLOY_USER}\n"
    host = lab.start(next_addr(), TRUSTS_CA + (PRINCIPALS if principals else ""), files=files,
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


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_a_gated_deploy_mints_and_kamal_gets_as_far_as_docker(
        lab: Lab, client: Client, tmp_path: Path, real_kamal: Path, ca_key: Path) -> None:
    host = ca_host(lab, client, ca_key, principals=True)
    app = live_app(tmp_path / "app", client, host.addr)
    deploy = app / "config" / "deploy.yml"  # a registry that refuses at once, never the internet
    deploy.write_text(deploy.read_text().replace("registry:\n",
                                                 f"registry:\n  server: {NO_REGISTRY}\n"))
    secure = app / ".kamal" / "secure.yml"
    secure.write_text(secure.read_text() + "certificates:\n  validity: 20\n"
                      "  source_address: [127.0.0.0/8]\n")
    env = dict(live_env(real_kamal, client), USER="alice", KAMAL_SECURE_CA_ENV="KAMAL_SSH_CA",
               KAMAL_SSH_CA=ca_key.read_text())
    first = certs.serial_now()
    # --skip-push: this machine cannot build, so Kamal goes straight to the hosts
    deployed = run([f"{BIN}/kamal-secure", "deploy", "--skip-push"], app, env)
    last = certs.serial_now()
    output = deployed.stdout + deployed.stderr
    assert deployed.returncode == 1, output  # logged in, then Docker on the host failed
    assert "Authentication failed" not in output
    assert f"Running docker login {NO_REGISTRY} " in output
    assert f"Exception while executing on host {host.addr}: docker exit status" in output
    assert "PRIVATE KEY" not in output
    # the CA came only from the environment, and the gate's own checks judged with it:
    # the host trusts it (no KS724) and no advice to put a static key back (KS718)
    for rule in ("KS718", "KS724", "KS725", "KS726"):
        assert rule not in output, output

    got = listed(certs.cert_path(client.key))  # what the gate left for Kamal, as ssh reads it
    key_id = f"kamal-secure:alice@{head(app)[:12]}:deploy"
    assert got["Type"] == ["ssh-ed25519-cert-v01@openssh.com user certificate"]
    assert got["Signing CA"][0].split()[1] == fingerprint(ca_key)
    assert got["Public key"][0].split()[1] == fingerprint(client.key)
    assert got["Key ID"] == [f'"{key_id}"']
    serial = int(got["Serial"][0])
    assert first <= serial <= last
    start, _, end = got["Valid"][0].removeprefix("from ").partition(" to ")
    assert utc(end) - utc(start) == dt.timedelta(minutes=21)  # validity, and a minute of skew
    assert first // 1000 - 60 <= utc(start).timestamp() <= last // 1000 - 60
    assert got["Principals"] == [DEPLOY_USER]
    assert got["Critical Options"] == ["source-address 127.0.0.0/8"]
    assert got["Extensions"] == ["(none)"]  # no pty, no forwarding, no user rc

    log = host.log()  # the gate's check and Kamal, each with this very certificate
    assert log.count(f"Accepted publickey for {DEPLOY_USER} ") == 2
    assert log.count(f"ID {key_id} (serial {serial})") == 2


def test_kamal_is_refused_an_expired_certificate_and_another_principals(
        lab: Lab, client: Client, tmp_path: Path, real_kamal: Path, ca_key: Path) -> None:
    host = ca_host(lab, client, ca_key, principals=True)
    app = live_app(tmp_path / "app", client, host.addr)
    env = live_env(real_kamal, client)
    source, now = certs.CaSource(path=ca_key), dt.datetime.now(dt.UTC)

    refused = f"Authentication failed for user {DEPLOY_USER}@{host.addr}"

    def kamal_with(principal: str, start: dt.datetime) -> tuple[int, str, str]:
        certs.write_cert(client.key, certs.mint(
            source, client.public, principal, 15, certs.key_id("alice", "", "server exec"),
            certs.serial_now(), now=start))
        mark = len(host.log())
        done = run([str(real_kamal), *WHOAMI], app, env)  # the real Kamal, no gate to re-mint
        return done.returncode, done.stdout + done.stderr, host.log()[mark:]

    code, output, log = kamal_with(DEPLOY_USER, now - dt.timedelta(hours=1))  # ended at -45m
    assert code == 1, output
    assert refused in output
    assert "Certificate invalid: expired" in log
    code, output, log = kamal_with("someone-else", now)
    assert code == 1, output
    assert refused in output
    assert "Certificate does not contain an authorized principal" in log
    code, output, log = kamal_with(DEPLOY_USER, now)  # the same Kamal, a good one: in
    assert code == 0, output
    assert f"Accepted publickey for {DEPLOY_USER} " in log
    assert DEPLOY_USER in output.split("App Host:", 1)[1]


def test_after_harden_trust_ca_the_key_alone_is_refused_and_the_gate_gets_in(
        lab: Lab, client: Client, tmp_path: Path, real_kamal: Path, ca_key: Path) -> None:
    host = key_host(lab, client)
    app = live_app(tmp_path / "app", client, host.addr)
    env = dict(live_env(real_kamal, client), USER="alice")
    before = run([str(real_kamal), *WHOAMI], app, env)
    assert before.returncode == 0, before.stdout  # the static key logs in
    hardened = run([f"{BIN}/kamal-secure", "harden", "--yes", "--trust-ca",
                    str(ca_key.with_name("kamal_ca.pub")), "--remove-static-keys",
                    "--rollback-after", "30"], app, env)
    assert hardened.returncode == 0, hardened.stdout + hardened.stderr
    assert client.public not in keys_file(host).read_text()
    assert not certs.cert_path(client.key).exists()  # harden's certificate stayed in memory

    mark = len(host.log())
    refused = run([str(real_kamal), *WHOAMI], app, env)
    assert refused.returncode == 1, refused.stdout
    assert f"Authentication failed for user {DEPLOY_USER}@{host.addr}" in refused.stdout
    assert f"Failed publickey for {DEPLOY_USER} from" in host.log()[mark:]
    assert f"ED25519 {fingerprint(client.key)}" in host.log()[mark:]  # the key, no certificate
    assert "Accepted" not in host.log()[mark:]

    secure = app / ".kamal" / "secure.yml"
    secure.write_text(secure.read_text() + f"certificates:\n  ca: {ca_key}\n")
    ok = run([f"{BIN}/kamal-secure", *WHOAMI], app, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert DEPLOY_USER in ok.stdout
    assert "KS718" not in ok.stdout + ok.stderr  # no advice to put the static key back
    key_id = f"kamal-secure:alice@{head(app)[:12]}:server exec"
    assert host.log()[mark:].count(f"ID {key_id} (serial") == 2  # the gate's check and Kamal
