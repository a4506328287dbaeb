"""Hosts that cannot be checked: each is a problem (exit 3), the others are still checked."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from kamal_secure.errors import EXIT_INCOMPLETE
from kamal_secure.report.model import Problem, Severity
from testing.live import host_project, rules_by_host, scan_hosts
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, keygen, next_addr

pytestmark = pytest.mark.sshd


def authorized(client: Client) -> dict[str, str]:
    return {DEPLOY_USER: client.public}


def rules(problems: list[Problem]) -> list[str]:
    return [p.what.split()[0] for p in problems]


def test_unknown_host_key_prints_fingerprint_and_pin(lab: Lab, client: Client,
                                                     tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized=authorized(client))
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert rules(report.problems) == ["KS802"]
    message = report.problems[0].message
    fingerprint = host.public_key.split()[1]
    assert "SHA256:" in message
    assert f"echo '{addr} ssh-ed25519 {fingerprint}' >> .kamal/known_hosts" in message
    assert report.exit_code(Severity.CRITICAL) == EXIT_INCOMPLETE
    assert "Accepted" not in host.log()  # nothing was sent before the key was checked


def test_pinned_project_known_hosts(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized=authorized(client))
    app = host_project(tmp_path / "app", client, [addr])
    (app / ".kamal" / "known_hosts").write_text(host.known_line())
    assert scan_hosts(app).problems == []


def test_changed_host_key_names_both(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized=authorized(client))
    old = keygen(tmp_path / "old_host_key")
    client.trust(f"{addr} {' '.join(old.split()[:2])}\n")
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert rules(report.problems) == ["KS803"]
    message = report.problems[0].message
    assert "HOST KEY CHANGED" in message
    assert message.count("SHA256:") == 2
    assert host.public_key.split()[1] not in message  # fingerprints, not keys


def test_odd_port_on_127_0_0_1_is_not_exempt(lab: Lab, client: Client, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = lab.start("127.0.0.1", HARDENED, port=port, authorized=authorized(client))
    client.trust(f"127.0.0.1 {host.public_key}\n")  # the port-22 name must not match
    report = scan_hosts(host_project(tmp_path / "app", client, ["127.0.0.1"], port=port))
    assert rules(report.problems) == ["KS802"]
    assert f"[127.0.0.1]:{port}" in report.problems[0].message
    client.trust(host.known_line())
    assert scan_hosts(host_project(tmp_path / "app", client, ["127.0.0.1"],
                                    port=port)).problems == []


def test_down_silent_and_healthy_hosts_together(lab: Lab, client: Client,
                                                tmp_path: Path) -> None:
    good, down, silent = next_addr(), next_addr(), next_addr()
    host = lab.start(good, HARDENED, files={
        "sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"},
        authorized=authorized(client))
    lab.silent(silent)
    client.trust(host.known_line())
    started = time.monotonic()
    report = scan_hosts(host_project(tmp_path / "app", client, [down, silent, good],
                                      timeout=2))
    elapsed = time.monotonic() - started
    by_host = {p.host: p for p in report.problems}
    assert set(by_host) == {down, silent}
    assert "Connection refused" in by_host[down].message
    assert by_host[silent].what.startswith("KS801")
    # accepts TCP, never speaks: its own message, with the (policy-shortened) banner timeout
    assert f"no SSH banner from {silent}:22 within 2 s" in by_host[silent].message
    assert "KS701" in rules_by_host(report)[good]  # the healthy host was still checked
    assert elapsed < 10


def test_login_refused(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: keygen(tmp_path / "other")})
    client.trust(host.known_line())
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert rules(report.problems) == ["KS804"]


def test_thirty_hosts_at_once(lab: Lab, client: Client, tmp_path: Path) -> None:
    addrs = [next_addr() for _ in range(30)]
    for addr in addrs:
        client.trust(lab.start(addr, HARDENED, authorized={
            DEPLOY_USER: f'from="127.0.0.0/8" {client.public}'}).known_line())
    started = time.monotonic()
    report = scan_hosts(host_project(tmp_path / "app", client, addrs))
    elapsed = time.monotonic() - started
    assert report.problems == []
    assert len(report.checked) == 30
    assert {f.rule for f in report.findings} == {"KS720"}
    assert elapsed < 30


def test_hashed_known_hosts_entries(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized=authorized(client))
    client.trust(host.known_line())
    known = client.home / ".ssh" / "known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True,
                   capture_output=True)
    client.trust("garbage line\n@cert-authority * ssh-ed25519 AAAA\nx ssh-rsa !!!\n")
    assert addr not in known.read_text()
    assert scan_hosts(host_project(tmp_path / "app", client, [addr])).problems == []


def test_revoked_host_key(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized=authorized(client))
    client.trust(host.known_line(), f"@revoked * {host.public_key}\n")
    report = scan_hosts(host_project(tmp_path / "app", client, [addr]))
    assert rules(report.problems) == ["KS803"]
    assert "REVOKED" in report.problems[0].message
