"""Drift watch against real loopback sshd hosts, each in its own network namespace (so that
its listening sockets are its own, not those of every test running on the machine)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kamal_secure.audit.hosts import audit_hosts
from kamal_secure.report.model import Finding, Severity
from testing.cli import REPO, Result, run_cli
from testing.live import host_project
from testing.sshd import DEPLOY_USER, HARDENED, Client, Host, Lab, keygen, next_addr

pytestmark = pytest.mark.sshd
STANDIN = Path(__file__).resolve().parents[2] / "examples" / "bin" / "kamal"
# sudo -n works for the deploy user: sshd -T runs via sudo and `sudo -n -l` lists its rules
SUDOERS = f"{DEPLOY_USER} ALL=(root) NOPASSWD: /usr/sbin/sshd\n"
ECDSA = "HostKey /etc/ssh/ssh_host_ecdsa_key\n"


def ks(app: Path, client: Client, *args: str) -> Result:
    return run_cli(args, app, {"HOME": str(client.home), "KAMAL_SECURE_KAMAL": str(STANDIN)})


def start(lab: Lab, client: Client, tmp_path: Path, hosts: int = 1
          ) -> tuple[list[Host], Path]:
    started = []
    for _ in range(hosts):
        host = lab.start(next_addr(), HARDENED, authorized={DEPLOY_USER: client.public},
                         sudoers=SUDOERS, netns=True)
        keygen(host.etc / "ssh_host_ecdsa_key", kind="ecdsa", replace=True)
        host.write("sshd_config.d/20-hostkeys.conf", ECDSA)
        client.trust(host.known_line())
        started.append(host)
    # one relay per host: proxy_command reaches each host inside its own namespace
    relay = " ".join(f"{h.addr}={h.process.pid}" for h in started if h.process)
    extra = (f"  proxy_command: \"{sys.executable} {NS_RELAY} {relay} %h %p\"\n"
             "  forward_agent: false\n")
    app = host_project(tmp_path / "app", client, [h.addr for h in started], extra_ssh=extra)
    # the relay is this test's own proxy_command: consent, as a user would in the policy
    (app / ".kamal").mkdir(exist_ok=True)
    # and KS404 off: these apps have no proxy section (not what drift watch is about)
    (app / ".kamal" / "secure.yml").write_text(POLICY)
    return started, app


POLICY = "rules:\n  KS404: {enabled: false}\nhosts:\n  allow_proxy_command: true\n"
NS_RELAY = REPO / "testing" / "ns_relay.py"


def scan(app: Path) -> list[Finding]:
    report = audit_hosts("config/deploy.yml", None, root=app, progress=False, drift=True,
                         allow_proxy_command=True)
    assert report.problems == [], report.problems
    return report.findings


def new(before: list[Finding], after: list[Finding]) -> list[tuple[str, Severity, str]]:
    """Findings in ``after`` that were not in ``before``; the KS719 info listing of other
    keys (a host rule, not drift) left out."""
    old = {(f.rule, f.message) for f in before}
    return sorted((f.rule, f.severity, f.message) for f in after
                  if (f.rule, f.message) not in old and f.rule != "KS719")


def approve(app: Path, client: Client) -> str:
    done = ks(app, client, "snapshot", "--approve")
    assert done.code == 0, done.stdout + done.stderr
    return done.stdout


@contextmanager
def listener(host: Host, port: int) -> Iterator[None]:
    assert host.process is not None
    code = ("import socket,sys,time\ns=socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
            "print('up', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen(["nsenter", "-t", str(host.process.pid), "-n", "--",
                             sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def docker_member() -> Iterator[str]:
    """A user of this test's own, added to the docker group (created when absent); the
    machine's /etc/passwd and /etc/group are shared by every test host, so all is undone."""
    user = f"ksdrift{secrets.token_hex(3)}"
    created = subprocess.run(["getent", "group", "docker"], capture_output=True,
                             check=False).returncode != 0
    if created:
        subprocess.run(["groupadd", "docker"], check=True)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], check=True)
    try:
        subprocess.run(["gpasswd", "-a", user, "docker"], capture_output=True, check=True)
        yield user
    finally:
        subprocess.run(["gpasswd", "-d", user, "docker"], capture_output=True, check=False)
        subprocess.run(["userdel", user], capture_output=True, check=False)
        if created:
            subprocess.run(["groupdel", "docker"], capture_output=True, check=False)


def reload(host: Host) -> None:
    """SIGHUP: sshd re-executes itself with the files on disk (same PID, same namespace)."""
    assert host.process is not None
    ready = host.log().count("Server listening on")
    host.process.send_signal(signal.SIGHUP)
    while host.log().count("Server listening on") == ready:
        assert host.process.poll() is None, host.log()
        time.sleep(0.05)


def logins(host: Host) -> int:
    return host.log().count(f"Accepted publickey for {DEPLOY_USER}")


def test_each_change_is_one_finding_and_reverting_clears_it(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    [host], app = start(lab, client, tmp_path)
    approve(app, client)
    baseline = scan(app)
    assert not [f for f in baseline if f.rule.startswith("KS75")], baseline

    # a new authorized key for the deploy user
    keys = host.etc / "authorized_keys" / DEPLOY_USER
    original = keys.read_text()
    other = keygen(tmp_path / "intruder", "intruder@laptop")
    keys.write_text(original + other + "\n")
    [(rule, severity, message)] = new(baseline, scan(app))
    assert (rule, severity) == ("KS751", Severity.HIGH)
    assert f"host {host.addr} gained authorized key for {DEPLOY_USER}" in message
    assert "intruder@laptop" in message
    keys.write_text(original)
    assert new(baseline, scan(app)) == []

    # a replaced host key (not the one the connection verifies: that one stops at KS803)
    saved = {p: p.read_bytes() for p in host.etc.glob("ssh_host_ecdsa_key*")}
    keygen(host.etc / "ssh_host_ecdsa_key", kind="ecdsa", replace=True)
    [(rule, severity, message)] = new(baseline, scan(app))
    assert (rule, severity) == ("KS752", Severity.HIGH)
    assert "changed host key: ecdsa-sha2-nistp256" in message
    for path, data in saved.items():
        path.write_bytes(data)
    assert new(baseline, scan(app)) == []

    # a drop-in that turns passwords on: reported once, by the host rule that judges it
    host.write("sshd_config.d/10-cloud.conf", "PasswordAuthentication yes\n")
    reload(host)
    [(rule, severity, message)] = new(baseline, scan(app))
    assert rule == "KS701"
    assert severity == Severity.CRITICAL
    listed = ks(app, client, "snapshot")  # what --approve would accept lists it all the same
    assert "passwordauthentication no -> passwordauthentication yes" in listed.stderr
    (host.etc / "sshd_config.d" / "10-cloud.conf").unlink()
    reload(host)
    assert new(baseline, scan(app)) == []

    # a new member of the docker group
    with docker_member() as user:
        [(rule, severity, message)] = new(baseline, scan(app))
        assert (rule, severity) == ("KS753", Severity.HIGH)
        assert message == f"host {host.addr} gained group member: docker {user}"
        subprocess.run(["gpasswd", "-d", user, "docker"], capture_output=True, check=True)
        assert new(baseline, scan(app)) == []
        # docker as the primary group (not listed in /etc/group's member list) counts too
        subprocess.run(["usermod", "-g", "docker", user], check=True)
        [(rule, severity, message)] = new(baseline, scan(app))
        assert (rule, severity) == ("KS753", Severity.HIGH)
        assert message == f"host {host.addr} gained group member: docker {user}"
        subprocess.run(["usermod", "-g", user, user], check=True)
        assert new(baseline, scan(app)) == []

    # a new listening port
    with listener(host, 8765):
        [(rule, severity, message)] = new(baseline, scan(app))
        assert (rule, severity) == ("KS755", Severity.MEDIUM)
        assert message.startswith(f"host {host.addr} gained listening TCP port: 127.0.0.1:8765")
    assert new(baseline, scan(app)) == []


def test_approve_again_makes_it_normal_and_round_trips(lab: Lab, client: Client,
                                                        tmp_path: Path) -> None:
    [host], app = start(lab, client, tmp_path)
    state = app / ".kamal" / "secure-state.json"
    assert "approved 1 host(s)" in approve(app, client)
    first = state.read_bytes()
    assert "unchanged, 1 host(s)" in approve(app, client)
    assert state.read_bytes() == first  # byte for byte: no timestamps, no ordering noise

    other = keygen(tmp_path / "ops", "ops@example.com")
    keys = host.etc / "authorized_keys" / DEPLOY_USER
    keys.write_text(keys.read_text() + f'from="127.0.0.0/8" {other}\n')
    assert [f.rule for f in scan(app) if f.rule.startswith("KS75")] == ["KS751"]
    pending = ks(app, client, "snapshot")  # shows what --approve would accept
    assert pending.code == 0
    assert f"host {host.addr} gained authorized key for {DEPLOY_USER}" in pending.stderr
    approve(app, client)
    assert [f.rule for f in scan(app) if f.rule.startswith("KS75")] == []
    diff = subprocess.run(["diff", "-u", "-", str(state)], input=first.decode(), text=True,
                          capture_output=True, check=False).stdout
    # JSON's separator moves to the line before when the new fact sorts last: not a change
    removed = {line[1:].rstrip(",") for line in diff.splitlines()
               if line.startswith("-") and not line.startswith("---")}
    added = [line for line in diff.splitlines() if line.startswith("+") and
             not line.startswith("+++") and line[1:].rstrip(",") not in removed]
    assert len(added) == 1, diff  # one new fact, one new line
    assert "ops@example.com" in added[0]
    assert other.split()[1] not in state.read_text()  # fingerprints only, never the key


def test_scan_drift_one_connection_per_host_and_waivers(lab: Lab, client: Client,
                                                        tmp_path: Path) -> None:
    hosts, app = start(lab, client, tmp_path, hosts=2)
    approve(app, client)
    before = [logins(h) for h in hosts]
    with listener(hosts[0], 9123):
        done = ks(app, client, "scan", "--drift", "--format", "json", "--fail-on", "medium")
        assert [logins(h) for h in hosts] == [n + 1 for n in before]
        assert done.code == 1, done.stdout + done.stderr
        assert '"rule": "KS755"' in done.stdout
        expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
        (app / ".kamal" / "secure.yml").write_text(
            POLICY + "  timeout: 5\n"
            f"waivers:\n  - rule: KS755\n    host: \"{hosts[0].addr}\"\n"
            f"    reason: debug port, OPS-1\n    expires: {expires}\n    owner: ops@example.com\n")
        waived = ks(app, client, "scan", "--drift", "--fail-on", "medium", "--format", "json")
        assert '"rule": "KS755"' in waived.stdout
        assert '"suppressed": {' in waived.stdout
    assert waived.code == 0, waived.stdout + waived.stderr  # the only drift is waived


def test_host_sets_and_unknown_facts(lab: Lab, client: Client, tmp_path: Path) -> None:
    hosts, app = start(lab, client, tmp_path, hosts=2)
    approve(app, client)
    deploy = app / "config" / "deploy.yml"
    text = deploy.read_text()
    deploy.write_text(text.replace(f"    - {hosts[1].addr}\n", ""))
    gone = [f for f in scan(app) if f.rule.startswith("KS75")]
    assert [(f.rule, f.severity, f.message) for f in gone] == [
        ("KS758", Severity.LOW, f"approved host {hosts[1].addr} is no longer in the config "
         "(any destination)")]
    state_lines = (app / ".kamal" / "secure-state.json").read_text().splitlines()
    line = gone[0].location.line
    assert line is not None
    assert state_lines[line - 1] == f'    "{hosts[1].addr}": {{'  # SARIF points at the host
    deploy.write_text(text)
    state = app / ".kamal" / "secure-state.json"
    approved = state.read_text()
    state.write_text(approved.replace(f'"{hosts[1].addr}": {{', '"gone.invalid": {', 1))
    found = {(f.rule, f.message) for f in scan(app) if f.rule.startswith("KS75")}
    assert ("KS758", f"host {hosts[1].addr} is in the config but not in the approved "
            "state") in found
    state.write_text(approved)

    # sudo -n stops working: the approved sudo rules are unknown now, not unchanged
    (hosts[0].root / "sudoers.d" / "kamal-secure-test").write_text("")
    unknown = [(f.rule, f.severity, f.message) for f in scan(app) if f.rule.startswith("KS75")]
    assert unknown == [("KS759", Severity.HIGH, f"host {hosts[0].addr}: approved sudo rules "
                        "cannot be read now, so they may have changed (sudo -n -l as "
                        f"{DEPLOY_USER}: sudo: a password is required)")]


def test_gate_refuses_deploy_on_drift_and_root_keys_count(lab: Lab, client: Client,
                                                          tmp_path: Path) -> None:
    [host], app = start(lab, client, tmp_path)
    missing = ks(app, client, "scan", "--drift")
    assert missing.code == 2
    assert "secure-state.json does not exist" in missing.stderr
    approve(app, client)
    passes = ks(app, client, "deploy")
    assert passes.code == 0, passes.stdout + passes.stderr
    assert "stand-in kamal ran" in passes.stdout
    root_keys = host.etc / "authorized_keys" / "root"  # AuthorizedKeysFile .../%u, for root
    root_keys.write_text(keygen(tmp_path / "rootkey", "backdoor") + "\n")
    root_keys.chmod(0o644)
    [(rule, severity, message)] = [(f.rule, f.severity, f.message) for f in scan(app)
                                   if f.rule.startswith("KS75")]
    assert (rule, severity) == ("KS751", Severity.HIGH)
    assert message.startswith(f"host {host.addr} gained authorized key for root: ")
    done = ks(app, client, "deploy")  # the gate compares too, because the state file exists
    assert done.code == 1, done.stdout + done.stderr
    assert "stand-in kamal ran" not in done.stdout
    assert "KS751" in done.stderr
    root_keys.unlink()
    clean = ks(app, client, "scan", "--drift", "--format", "json")
    assert '"rule": "KS75' not in clean.stdout


def test_approve_writes_nothing_when_a_host_cannot_be_read(lab: Lab, client: Client,
                                                           tmp_path: Path) -> None:
    [host], app = start(lab, client, tmp_path)
    approve(app, client)
    state = app / ".kamal" / "secure-state.json"
    before = state.read_bytes()
    deploy = app / "config" / "deploy.yml"
    silent = next_addr()
    lab.silent(silent)
    deploy.write_text(deploy.read_text().replace(f"    - {host.addr}\n",
                                                 f"    - {host.addr}\n    - {silent}\n"))
    done = ks(app, client, "snapshot", "--approve")
    assert done.code == 3, done.stdout + done.stderr
    assert f"could not read {silent}" in done.stderr
    assert "nothing approved" in done.stderr
    assert state.read_bytes() == before


def test_new_trusted_ca_is_one_finding(lab: Lab, client: Client, tmp_path: Path) -> None:
    [host], app = start(lab, client, tmp_path)
    approve(app, client)
    baseline = scan(app)
    host.write("user_ca.pub", keygen(tmp_path / "ca", "corp-ca") + "\n")
    host.write("sshd_config.d/30-ca.conf", "TrustedUserCAKeys /etc/ssh/user_ca.pub\n")
    # KS727 (a CA trusted without AuthorizedPrincipalsFile) is a host rule, not drift
    [(rule, severity, message)] = [x for x in new(baseline, scan(app)) if x[0] != "KS727"]
    assert (rule, severity) == ("KS757", Severity.HIGH)
    assert message.startswith(f"host {host.addr} gained TrustedUserCAKeys key: SHA256:")
    (host.etc / "sshd_config.d" / "30-ca.conf").unlink()
    assert new(baseline, scan(app)) == []


def test_destinations_share_one_state_file(lab: Lab, client: Client, tmp_path: Path) -> None:
    [prod, staging], app = start(lab, client, tmp_path, hosts=2)
    deploy = app / "config" / "deploy.yml"
    deploy.write_text(deploy.read_text().replace(f"    - {staging.addr}\n", ""))
    (app / "config" / "deploy.staging.yml").write_text(
        f"servers:\n  web:\n    - {staging.addr}\n")
    approve(app, client)  # every destination: both hosts
    state = app / ".kamal" / "secure-state.json"
    assert f'"{prod.addr}"' in state.read_text()
    assert f'"{staging.addr}"' in state.read_text()
    staged = ks(app, client, "scan", "--drift", "-d", "staging", "--format", "json")
    assert '"rule": "KS75' not in staged.stdout, staged.stdout  # prod is not "gone"
    keys = staging.etc / "authorized_keys" / DEPLOY_USER
    keys.write_text(keys.read_text() + keygen(tmp_path / "k2", "staging-ops") + "\n")
    prod_before = json.loads(state.read_text())["hosts"][prod.addr]
    done = ks(app, client, "snapshot", "--approve", "-d", "staging")
    assert done.code == 0, done.stderr
    assert "staging-ops" in state.read_text()
    assert json.loads(state.read_text())["hosts"][prod.addr] == prod_before  # kept as is
