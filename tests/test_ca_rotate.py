"""`kamal-secure ca rotate` against real sshd hosts that trust a CA (TrustedUserCAKeys) and
hold no static key: the new CA trusted beside the old one, proven, the policy switched, the
old one removed; a crash after every step, then --resume or --abort; a host down. Logins are
checked with the real OpenSSH client and certificates made by ssh-keygen; which CA signed
our own logins is read from each host's sshd log, fingerprints from `ssh-keygen -lf`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from kamal_secure.remediate.ca_rotate import STEPS
from testing.ca_hosts import ca_host, cert_logs_in, line, trusted
from testing.cli import Result, run_cli
from testing.harden import harden, key_host
from testing.live import host_project, logs_in
from testing.sshd import (
    DEPLOY_USER,
    Client,
    Host,
    Lab,
    fingerprint,
    keygen,
    next_addr,
    wait_sessions_done,
)

pytestmark = pytest.mark.sshd
JOURNAL = Path(".kamal/secure-ca-rotation.json")


def setup(lab: Lab, client: Client, tmp_path: Path, n: int = 2
          ) -> tuple[Path, list[Host], Path]:
    """``n`` hosts trusting the CA ~/.ssh/kamal_ca, which the policy names."""
    old = client.home / ".ssh" / "kamal_ca"
    keygen(old, "kamal-secure-ca:old")
    hosts = [ca_host(lab, client, old.with_name("kamal_ca.pub")) for _ in range(n)]
    app = host_project(tmp_path / "app", client, [h.addr for h in hosts])
    (app / ".kamal" / "secure.yml").write_text(
        "# the team's policy\nhosts:\n  timeout: 5\ncertificates:\n  validity: 15\n"
        f"  ca: {old}   # the CA\n")
    return app, hosts, old


def rotate(app: Path, client: Client, *args: str, crash: str | None = None,
           env: dict[str, str] | None = None) -> Result:
    full = {"HOME": str(client.home), **(env or {})}
    if crash:
        full["KAMAL_SECURE_TEST_CRASH_AFTER"] = crash
    return run_cli(["ca", "rotate", *args], app, full)


def named_ca(app: Path) -> Path:
    match = re.search(r"^  ca: (\S+)", (app / ".kamal" / "secure.yml").read_text(), re.M)
    assert match
    return Path(match.group(1)).expanduser()


def held(client: Client) -> list[Path]:
    return sorted(p for p in (client.home / ".ssh").glob("kamal_ca*")
                  if p.suffix != ".pub" and ".retired-" not in p.name)


def assert_invariant(app: Path, hosts: list[Host], client: Client, tmp_path: Path) -> None:
    """The CA the policy names signs a certificate that logs in on every host."""
    for host in hosts:
        assert cert_logs_in(client, named_ca(app), host, tmp_path), host.addr


def accepted_cas(host: Host) -> set[str]:
    """The fingerprints of the CAs whose certificates of ours (key id ...:ca rotate) logged
    in to ``host``, from its sshd log."""
    return set(re.findall(r'Accepted certificate ID "kamal-secure:[^"]*:ca rotate" .*signed '
                          r"by \S+ CA (SHA256:\S+)", host.log()))


def test_full_rotation(lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts, old = setup(lab, client, tmp_path)
    policy = app / ".kamal" / "secure.yml"
    dry = rotate(app, client, "--dry-run")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert fingerprint(old.with_name("kamal_ca.pub")) in dry.stdout
    assert not (app / JOURNAL).exists()
    assert held(client) == [old]
    pids = [h.process.pid for h in hosts if h.process]
    old_fp = fingerprint(old.with_name("kamal_ca.pub"))
    done = rotate(app, client, "--yes")
    assert done.code == 0, done.stdout + done.stderr
    new = named_ca(app)
    assert new != old
    assert new.name.startswith("kamal_ca-rotated-")
    assert re.sub(r" +#", " #", policy.read_text()) == (
        "# the team's policy\nhosts:\n  timeout: 5\ncertificates:\n"
        f"  validity: 15\n  ca: ~/.ssh/{new.name} # the CA\n")  # the rest kept
    new_pub = new.with_name(new.name + ".pub")
    assert "kamal-secure-ca:" in new_pub.read_text()
    for host in hosts:
        assert trusted(host) == [line(new_pub)]
        assert cert_logs_in(client, new, host, tmp_path)
        assert not logs_in(client.key, host, client)  # the deploy key alone: refused
        # our own logins: first with the old CA's certificate, then with the new one's
        assert accepted_cas(host) == {old_fp, fingerprint(new_pub)}
        assert "SIGHUP" not in host.log()  # no reload: sshd reads the file at every login
    assert [h.process.pid for h in hosts if h.process] == pids
    assert not old.exists()
    retired = [p for p in old.parent.glob("kamal_ca.retired-*") if p.suffix != ".pub"]
    assert len(retired) == 1
    for host in hosts:  # the retired old CA's certificate is refused everywhere
        assert not cert_logs_in(client, retired[0], host, tmp_path)
    assert not (app / JOURNAL).exists()
    assert f"the old CA key is kept as {retired[0]}" in done.stdout


@pytest.mark.parametrize("step", STEPS[1:])
def test_crash_then_resume(step: str, lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts, old = setup(lab, client, tmp_path)
    crashed = rotate(app, client, "--yes", crash=step)
    assert crashed.code == 99, crashed.stdout + crashed.stderr
    assert json.loads((app / JOURNAL).read_text())["step"] == step
    assert_invariant(app, hosts, client, tmp_path)
    assert rotate(app, client, "--yes").code == 2  # a rotation is in progress
    resumed = rotate(app, client, "--resume")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    new = named_ca(app)
    assert new != old
    for host in hosts:
        assert trusted(host) == [line(new.with_name(new.name + ".pub"))]
    assert_invariant(app, hosts, client, tmp_path)
    assert not (app / JOURNAL).exists()


@pytest.mark.parametrize("step", STEPS[1:6])  # up to "removed": the old CA goes back
def test_crash_then_abort(step: str, lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts, old = setup(lab, client, tmp_path)
    policy = app / ".kamal" / "secure.yml"
    before = policy.read_text()
    assert rotate(app, client, "--yes", crash=step).code == 99
    aborted = rotate(app, client, "--abort")
    assert aborted.code == 0, aborted.stdout + aborted.stderr
    assert policy.read_text() == before  # byte for byte
    assert held(client) == [old]  # the new CA key moved aside
    assert list(old.parent.glob("kamal_ca-rotated-*.retired-*"))
    for host in hosts:
        assert trusted(host) == [line(old.with_name("kamal_ca.pub"))]
    assert_invariant(app, hosts, client, tmp_path)
    assert not (app / JOURNAL).exists()


def test_a_third_ca_named_after_the_switch_keeps_the_old_one(lab: Lab, client: Client,
                                                              tmp_path: Path) -> None:
    """The old CA leaves the hosts only once certificate mode names the new one: a CA the
    hosts were never shown to trust is refused, and the old CA still logs in."""
    app, hosts, old = setup(lab, client, tmp_path, n=1)
    assert rotate(app, client, "--yes", crash="switched").code == 99
    other = client.home / ".ssh" / "other_ca"
    keygen(other, "kamal-secure-ca:other")
    policy = app / ".kamal" / "secure.yml"
    policy.write_text(re.sub(r"^  ca: \S+", f"  ca: {other}", policy.read_text(), flags=re.M))
    resumed = rotate(app, client, "--resume")
    assert resumed.code == 3, resumed.stdout + resumed.stderr
    assert "names a CA that is neither the old nor the new one" in resumed.stderr
    assert line(old.with_name("kamal_ca.pub")) in trusted(hosts[0])
    assert cert_logs_in(client, old, hosts[0], tmp_path)
    assert old.exists()
    assert json.loads((app / JOURNAL).read_text())["step"] == "switched"


def test_abort_after_retirement_is_refused(lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts, _ = setup(lab, client, tmp_path, n=1)
    assert rotate(app, client, "--yes", crash="retired").code == 99
    refused = rotate(app, client, "--abort")
    assert refused.code == 3
    assert "too late to abort" in refused.stderr
    assert_invariant(app, hosts, client, tmp_path)
    assert rotate(app, client, "--resume").code == 0
    assert_invariant(app, hosts, client, tmp_path)


def test_a_host_down_at_the_add_step_rolls_back(lab: Lab, client: Client,
                                                tmp_path: Path) -> None:
    app, hosts, old = setup(lab, client, tmp_path, n=1)
    deploy = app / "config" / "deploy.yml"
    deploy.write_text(deploy.read_text().replace(f"    - {hosts[0].addr}\n",
                                                 f"    - {hosts[0].addr}\n    - {next_addr()}\n"))
    policy = (app / ".kamal" / "secure.yml").read_text()
    done = rotate(app, client, "--yes")
    assert done.code == 3, done.stdout + done.stderr
    assert "rolled back: every host trusts the old CA" in done.stderr
    assert (f"  {hosts[0].addr}: the old CA's certificate logs in; the new CA removed"
            in done.stderr)
    assert trusted(hosts[0]) == [line(old.with_name("kamal_ca.pub"))]
    assert (app / ".kamal" / "secure.yml").read_text() == policy
    assert held(client) == [old]
    assert not (app / JOURNAL).exists()
    assert_invariant(app, hosts, client, tmp_path)


def test_a_ca_from_the_environment_is_said_never_printed(lab: Lab, client: Client,
                                                         tmp_path: Path) -> None:
    app, hosts, old = setup(lab, client, tmp_path, n=1)
    (app / ".kamal" / "secure.yml").write_text("hosts:\n  timeout: 5\n")  # names no CA
    secret = old.read_text()
    paused = rotate(app, client, "--yes",
                    env={"KAMAL_SECURE_CA_ENV": "KSCA", "KSCA": secret})
    assert paused.code == 3, paused.stdout + paused.stderr
    assert "the CA comes from $KSCA" in paused.stdout
    assert "gh secret set KSCA <" in paused.stdout
    assert "PRIVATE KEY" not in paused.stdout + paused.stderr
    new = Path(json.loads((app / JOURNAL).read_text())["new_ca"])
    assert trusted(hosts[0]) == [line(old.with_name("kamal_ca.pub")),
                                 line(new.with_name(new.name + ".pub"))]
    still_old = rotate(app, client, "--resume", env={"KAMAL_SECURE_CA_ENV": "KSCA",
                                                     "KSCA": secret})
    assert still_old.code == 3
    assert "certificate mode still names the old CA" in still_old.stderr
    assert cert_logs_in(client, old, hosts[0], tmp_path)
    # resumed where the variable is not set (a laptop, not CI): nothing shows that the
    # deploys sign with the new CA, so the old one stays on the hosts
    unnamed = rotate(app, client, "--resume")
    assert unnamed.code == 3, unnamed.stdout + unnamed.stderr
    assert "certificate mode names no CA here" in unnamed.stderr
    assert len(trusted(hosts[0])) == 2
    assert old.exists()
    done = rotate(app, client, "--resume", env={"KAMAL_SECURE_CA_ENV": "KSCA",
                                                "KSCA": new.read_text()})
    assert done.code == 0, done.stdout + done.stderr
    assert trusted(hosts[0]) == [line(new.with_name(new.name + ".pub"))]
    assert "not a file here ($KSCA): delete it there" not in done.stdout  # the file is ours
    assert not old.exists()
    assert cert_logs_in(client, new, hosts[0], tmp_path)


def test_a_ca_in_the_agent_waits_for_the_new_key_there(lab: Lab, client: Client, agent: str,
                                                       tmp_path: Path) -> None:
    app, hosts, old = setup(lab, client, tmp_path, n=1)
    env = {"SSH_AUTH_SOCK": agent, "KAMAL_SECURE_CA_AGENT": "1"}
    subprocess.run(["ssh-add", "-q", str(old)], env={**env, "HOME": str(client.home)},
                   check=True)
    paused = rotate(app, client, "--yes", env=env)
    assert paused.code == 3, paused.stdout + paused.stderr
    new = named_ca(app)  # the policy names the new key: the agent path follows it
    assert new != old
    assert f"ssh-add {new}" in paused.stdout
    assert len(trusted(hosts[0])) == 2
    missing = rotate(app, client, "--resume", env=env)
    assert missing.code == 2, missing.stdout + missing.stderr
    assert "is not in the ssh-agent" in missing.stderr
    assert len(trusted(hosts[0])) == 2  # the old CA stays until the agent holds the new one
    subprocess.run(["ssh-add", "-q", str(new)], env={**env, "HOME": str(client.home)},
                   check=True)
    done = rotate(app, client, "--resume", env=env)
    assert done.code == 0, done.stdout + done.stderr
    assert trusted(hosts[0]) == [line(new.with_name(new.name + ".pub"))]
    assert cert_logs_in(client, new, hosts[0], tmp_path)
    assert not (app / JOURNAL).exists()


def test_after_harden_trust_ca_and_again_after(lab: Lab, client: Client,
                                               tmp_path: Path) -> None:
    """The hosts as `harden --trust-ca OLD.pub --remove-static-keys` leaves them; after the
    rotation, `harden --trust-ca NEW.pub` finds them already as it wants them."""
    old = client.home / ".ssh" / "kamal_ca"
    keygen(old, "kamal-secure-ca:old")
    host = key_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    (app / ".kamal" / "secure.yml").write_text(f"hosts:\n  timeout: 5\ncertificates:\n"
                                               f"  ca: {old}\n")
    hardened = harden(app, client, "--yes", "--trust-ca", f"{old}.pub", "--remove-static-keys",
                      "--rollback-after", "10")
    assert hardened.code == 0, hardened.stdout + hardened.stderr
    assert not logs_in(client.key, host, client)
    wait_sessions_done(host)
    done = rotate(app, client, "--yes")
    assert done.code == 0, done.stdout + done.stderr
    new = named_ca(app)
    assert trusted(host) == [line(new.with_name(new.name + ".pub"))]
    assert cert_logs_in(client, new, host, tmp_path)
    # harden logs in as Kamal does: with KEY-cert.pub beside the key (the gate mints it in
    # certificate mode; here ssh-keygen does, with the new CA)
    subprocess.run(["ssh-keygen", "-q", "-s", str(new), "-I", "kamal-secure:test", "-n",
                    DEPLOY_USER, "-V", "+10m", f"{client.key}.pub"], check=True)
    again = harden(app, client, "--yes", "--trust-ca", f"{new}.pub")
    assert again.code == 0, again.stdout + again.stderr
    assert "already hardened (unchanged)" in again.stdout


def test_a_passphrase_only_for_a_ca_in_the_agent(lab: Lab, client: Client,
                                                 tmp_path: Path) -> None:
    """The gate cannot decrypt a CA file or variable: an encrypted new CA would sign no
    deploy once the policy names it. Refused before anything changes."""
    app, hosts, old = setup(lab, client, tmp_path, n=1)
    refused = rotate(app, client, "--yes", "--passphrase-from-env", "CA_PASS",
                     env={"CA_PASS": "correct horse"})
    assert refused.code == 2, refused.stdout + refused.stderr
    assert "ssh-agent" in refused.stderr
    assert "correct horse" not in refused.stdout + refused.stderr
    assert not (app / JOURNAL).exists()
    assert trusted(hosts[0]) == [line(old.with_name("kamal_ca.pub"))]
