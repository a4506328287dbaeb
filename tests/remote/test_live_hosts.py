"""Host checks against real OpenSSH sshd processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kamal_secure.config.inventory import build_inventory
from kamal_secure.config.load import load_project
from kamal_secure.facts.host import SOURCE_HOSTKEY, HostFacts
from kamal_secure.remote.fleet import check_fleet
from kamal_secure.report.model import Severity
from testing.cli import REPO, clean_env
from testing.live import host_project, rules_by_host, scan_hosts
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, next_addr

pytestmark = pytest.mark.sshd


def deploy_line(client: Client, options: str = 'from="127.0.0.0/8"') -> str:
    return f"{options} {client.public}".strip()


def test_hardened_host(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert report.problems == []
    assert {(f.rule, f.severity) for f in report.findings} == {("KS720", Severity.INFO)}
    assert report.checked == [f"host {addr}: {SOURCE_HOSTKEY}"]
    assert report.findings[0].location.line == 5  # the deploy.yml line naming the host


def test_cloud_init_trap(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)},
                     files={"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    found = {f.rule: f for f in report.findings}
    assert found["KS701"].severity is Severity.CRITICAL
    assert "password" in (found["KS701"].evidence or "")
    assert "KS721" not in found


def test_match_user_turns_password_on(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    config = HARDENED + f"Match User {DEPLOY_USER}\n  PasswordAuthentication yes\n"
    host = lab.start(addr, config, authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert "KS701" in rules_by_host(report)[addr]


def test_keyboard_interactive_with_pam(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    files = {"sshd_config.d/10-pam.conf": "UsePAM yes\nKbdInteractiveAuthentication yes\n"}
    host = lab.start(addr, HARDENED, files=files,
                     authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    found = {f.rule: f for f in report.findings}
    assert "keyboard-interactive" in (found["KS702"].evidence or "")


def test_root_login_allowed_read_as_root(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    config = HARDENED.replace("PermitRootLogin no", "PermitRootLogin yes").replace(
        "AllowUsers kshdeploy", "AllowUsers kshdeploy root")
    host = lab.start(addr, config, authorized={"root": deploy_line(client)})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr], user="root"))
    assert "KS704" in rules_by_host(report)[addr]
    assert report.checked == [f"host {addr}: sshd -T (as root)"]


def test_unreadable_config_is_unknown_not_guessed(lab: Lab, client: Client,
                                                 tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)},
                     main_mode=0o600)
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert {(f.rule, f.severity) for f in report.findings} == {("KS722", Severity.HIGH)}
    derived = next(f for f in report.findings if f.rule == "KS722")
    assert "could not read /etc/ssh/sshd_config" in (derived.evidence or "")
    assert report.checked == [f"host {addr}: live probe only"]
    assert [p.what.split()[0] for p in report.problems] == ["KS722"]  # root login unknown
    assert "PermitRootLogin" in report.problems[0].message


CLOUD_INIT_0600 = "PermitRootLogin yes\nMaxAuthTries 50\nAllowTcpForwarding yes\n"


def test_unreadable_drop_in_fails_closed(lab: Lab, client: Client, tmp_path: Path) -> None:
    """Ubuntu's 0600 root-owned 50-cloud-init.conf, a deploy user without sudo: sshd -T
    cannot run and the drop-in cannot be read, so nothing it might set is reported as
    safe. Password and keyboard-interactive are decided by the live probe; PermitRootLogin
    cannot be probed: the verdict is incomplete (exit 3), not clean."""
    addr = next_addr()
    files = {"sshd_config.d/50-cloud-init.conf": CLOUD_INIT_0600}
    host = lab.start(addr, HARDENED, files=files, authorized={DEPLOY_USER: deploy_line(client)})
    drop_in = host.etc / "sshd_config.d" / "50-cloud-init.conf"
    drop_in.chmod(0o600)
    assert drop_in.stat().st_uid == 0
    assert subprocess.run(["su", "-s", "/bin/sh", DEPLOY_USER, "-c", "sudo -n true"],
                          capture_output=True, check=False).returncode != 0
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert report.checked == [f"host {addr}: live probe only"]
    found = {f.rule: f for f in report.findings}
    assert found["KS722"].severity is Severity.HIGH
    assert "could not read /etc/ssh/sshd_config.d/50-cloud-init.conf" in (
        found["KS722"].evidence or "")
    assert "KS701" not in found  # the probe decides: the daemon offers publickey only
    assert "KS702" not in found
    assert len(report.problems) == 1
    assert "PermitRootLogin unknown" in report.problems[0].message
    assert "Password" not in report.problems[0].message  # the probe decided those
    assert report.exit_code(Severity.CRITICAL) == 3


def test_unreadable_drop_in_severity_from_policy(lab: Lab, client: Client,
                                                 tmp_path: Path) -> None:
    addr = next_addr()
    files = {"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
    host = lab.start(addr, HARDENED, files=files, authorized={DEPLOY_USER: deploy_line(client)})
    (host.etc / "sshd_config.d" / "50-cloud-init.conf").chmod(0o600)
    client.trust(host.known_line())
    root = host_project(tmp_path / "app", client, [addr])
    (root / ".kamal" / "secure.yml").write_text(
        "hosts:\n  timeout: 5\n  unknown_severity: critical\n")
    report = scan_hosts(root)
    found = {f.rule: f for f in report.findings}
    assert found["KS722"].severity is Severity.CRITICAL
    assert "KS701" in found  # the live probe still sees password login


def test_not_reloaded_reports_both(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)})
    host.write("sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n")
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    found = {f.rule: f for f in report.findings}
    assert "after a reload" in found["KS701"].message
    assert "KS721" in found


def test_jump_host(lab: Lab, client: Client, tmp_path: Path) -> None:
    jump_addr, targets = next_addr(), [next_addr(), next_addr(), next_addr()]
    jump_config = HARDENED.replace("AllowTcpForwarding no", "AllowTcpForwarding local")
    jump = lab.start(jump_addr, jump_config, authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(jump.known_line())
    for addr in targets:
        client.trust(lab.start(addr, HARDENED, authorized={
            DEPLOY_USER: deploy_line(client)}).known_line())
    extra = f"  proxy: {DEPLOY_USER}@{jump_addr}\n"
    report = scan_hosts(host_project(tmp_path / "app", client, targets, extra_ssh=extra))
    assert report.problems == []
    assert rules_by_host(report) == {addr: {"KS720"} for addr in targets}
    assert jump.log().count("Accepted publickey for kshdeploy") == 3  # one per target


def test_unknown_jump_host_key_stops_that_host(lab: Lab, client: Client,
                                               tmp_path: Path) -> None:
    jump_addr, target_addr = next_addr(), next_addr()
    lab.start(jump_addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)})
    target = lab.start(target_addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(target.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [target_addr],
                                      extra_ssh=f"  proxy: {DEPLOY_USER}@{jump_addr}\n"))
    assert [p.what.split()[0] for p in report.problems] == ["KS802"]
    assert jump_addr in report.problems[0].message


@pytest.mark.skipif(not Path("/usr/bin/sudo").exists(), reason="sudo is not installed")
def test_sudo_n_path(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    sudoers = f"{DEPLOY_USER} ALL=(root) NOPASSWD: /usr/sbin/sshd\n"
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)},
                     main_mode=0o600, sudoers=sudoers)
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert report.checked == [f"host {addr}: sshd -T (sudo -n)"]
    assert {f.rule for f in report.findings} == {"KS720"}


def test_one_connection_and_one_command_per_host(lab: Lab, client: Client,
                                                 tmp_path: Path) -> None:
    """AuthorizedKeysFile tokens are expanded by the host script exactly as we expand them."""
    tokens = "AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys %h/k_%u_%%x\n"
    addrs = [next_addr(), next_addr()]
    for addr in addrs:
        client.trust(lab.start(addr, HARDENED, files={"sshd_config.d/10-keys.conf": tokens},
                               authorized={DEPLOY_USER: deploy_line(client)}).known_line())
    app = host_project(tmp_path / "app", client, addrs)
    inventory = build_inventory(load_project(root=app))
    result = check_fleet(inventory, app, progress=False)
    assert result.problems == []
    assert (result.connections, result.execs) == (2, 2)
    facts = result.facts[0][1]
    assert facts.authorized_keys is not None
    assert [k.source_file for k in facts.authorized_keys] == [
        f"/etc/ssh/authorized_keys/{DEPLOY_USER}"]


def test_a_host_busy_past_the_deadline_is_a_problem_and_the_others_are_kept(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    addrs = [next_addr(), next_addr()]
    for addr in addrs:
        client.trust(lab.start(addr, HARDENED,
                               authorized={DEPLOY_USER: deploy_line(client)}).known_line())
    inventory = build_inventory(load_project(root=host_project(tmp_path / "app", client,
                                                                addrs)))
    release = threading.Event()

    def collect(sess: object, facts: HostFacts) -> object:
        if facts.name == addrs[0]:  # the first host hangs after its facts are in
            release.wait(60)
        return facts.name

    started = time.monotonic()
    try:
        result = check_fleet(inventory, tmp_path / "app", timeout=2.0, progress=False,
                             collect=collect)
    finally:
        release.set()
    assert time.monotonic() - started < 40  # the budget, (2 * 3 + 5) s, not 60 s
    assert [t.name for t, _ in result.facts] == [addrs[1]]
    assert [(p.target.name, p.reason) for p in result.problems] == [(addrs[0], "unreachable")]
    assert result.problems[0].message.startswith("no answer within")


def test_proxy_command(lab: Lab, client: Client, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    addr = next_addr()
    monkeypatch.setenv("KS_RELAY_LOG", str(tmp_path / "relay.log"))
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(host.known_line())
    relay = REPO / "testing" / "proxy_relay.py"
    extra = f"  proxy_command: \"{sys.executable} {relay} %h %p\"\n"
    app = host_project(tmp_path / "app", client, [addr], extra_ssh=extra)
    refused = scan_hosts(app)  # a local command from the repository: not run unless allowed
    assert [p.what.split()[0] for p in refused.problems] == ["KS801"]
    assert "--allow-proxy-command" in refused.problems[0].message
    assert not (tmp_path / "relay.log").exists()
    report = scan_hosts(app, allow_proxy_command=True)
    assert report.problems == []
    assert rules_by_host(report) == {addr: {"KS720"}}
    assert (tmp_path / "relay.log").read_text() == f"{addr}:22\n"


def test_agent_keys_from_many_threads(lab: Lab, client: Client, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """keys_only false and no ssh.keys: Kamal offers the agent's keys; five hosts sign
    through one agent connection at once."""
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    env = dict(line.split(";")[0].split("=", 1) for line in agent.stdout.splitlines()
               if line.startswith(("SSH_AUTH_SOCK=", "SSH_AGENT_PID=")))
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", env["SSH_AUTH_SOCK"])
        subprocess.run(["ssh-add", "-q", str(client.key)], check=True,
                       env=clean_env({"SSH_AUTH_SOCK": env["SSH_AUTH_SOCK"]}),
                       capture_output=True)
        client.key.rename(client.key.with_name("not_a_default_name"))  # agent only
        addrs = [next_addr() for _ in range(5)]
        for addr in addrs:
            client.trust(lab.start(addr, HARDENED, authorized={
                DEPLOY_USER: deploy_line(client)}).known_line())
        app = host_project(tmp_path / "app", client, addrs)
        deploy = app / "config" / "deploy.yml"
        deploy.write_text(deploy.read_text().replace("keys_only: true", "keys_only: false")
                          .replace(f'  keys: ["{client.key}"]\n', ""))
        report = scan_hosts(app)
        assert report.problems == []
        assert len(report.checked) == 5
    finally:
        os.kill(int(env["SSH_AGENT_PID"]), signal.SIGTERM)


def test_match_address_uses_our_address_as_the_host_sees_it(lab: Lab, client: Client,
                                                            tmp_path: Path) -> None:
    addr = next_addr()
    config = HARDENED + "Match Address 127.0.0.0/8\n  PermitRootLogin yes\n"
    host = lab.start(addr, config, authorized={DEPLOY_USER: deploy_line(client)})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    found = {f.rule: f for f in report.findings}
    assert "permitrootlogin yes" in (found["KS704"].evidence or "")
