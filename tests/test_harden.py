"""`kamal-secure harden` against real sshd hosts on loopback: hardened, or left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Client, next_addr
from tests.live import rules_by_host, scan_hosts, write_project
from tests.sshd_hosts import DEPLOY_USER, Host, Lab

pytestmark = pytest.mark.sshd
SUDO = f"{DEPLOY_USER} ALL=(root) NOPASSWD: ALL\n"
TRAP = {"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
DROPIN = "sshd_config.d/00-kamal-secure.conf"


def harden(app: Path, client: Client, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(client.home), NO_COLOR="1")
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run([sys.executable, "-m", "kamal_secure", "harden", *args], cwd=app,
                          env=env, capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


def cloud_host(lab: Lab, client: Client, sudo: bool = True) -> Host:
    host = lab.start(next_addr(), "", files=TRAP, authorized={DEPLOY_USER: client.public},
                     sudoers=SUDO if sudo else None)
    client.trust(host.known_line())
    return host


def test_hardens_the_cloud_init_trap_and_is_idempotent(lab: Lab, client: Client,
                                                       tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = write_project(tmp_path / "app", client, [host.addr])
    assert "KS701" in rules_by_host(scan_hosts(app))[host.addr]
    dry = harden(app, client, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would change (sshd -T now -> after): passwordauthentication yes -> no" in dry.stdout
    assert not (host.etc / DROPIN).exists()
    done = harden(app, client, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no password offered" in done.stdout
    text = (host.etc / DROPIN).read_text()
    assert f"AllowUsers {DEPLOY_USER}" in text
    assert "ecdh-sha2-nistp256" in text  # Kamal's net-ssh needs it
    found = rules_by_host(scan_hosts(app)).get(host.addr, set())
    baseline = {f"KS7{n:02d}" for n in range(1, 18)}  # KS701-KS717: the sshd baseline
    assert not found & baseline, found
    again = harden(app, client, "--yes")
    assert "already hardened (unchanged)" in again.stdout
    assert (host.etc / DROPIN).read_text() == text


def test_a_lockout_is_reverted_and_the_host_stays_reachable(lab: Lab, client: Client,
                                                            tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = write_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--allow-from", "192.0.2.0/24")
    assert done.returncode == 3
    assert "reverted" in done.stdout
    assert not (host.etc / DROPIN).exists()
    assert "KS801" not in str(scan_hosts(app).problems)  # still reachable with the key


def test_sshd_t_failure_changes_nothing(lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    host.write("sshd_config.d/10-broken.conf", "NoSuchKeyword yes\n")
    app = write_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes")
    assert done.returncode == 3
    assert "`sshd -t` rejected the result, nothing changed" in done.stdout
    assert not (host.etc / DROPIN).exists()


def test_without_root_or_sudo_it_says_so(lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client, sudo=False)
    app = write_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes")
    assert done.returncode == 3
    assert "needs root or passwordless sudo" in done.stdout
    assert not (host.etc / DROPIN).exists()


def test_bad_cidr_is_a_usage_error(client: Client, tmp_path: Path) -> None:
    app = write_project(tmp_path / "app", client, ["127.55.250.240"])
    done = harden(app, client, "--yes", "--allow-from", "$(reboot)")
    assert done.returncode == 2
    assert "not an address or CIDR" in done.stderr
