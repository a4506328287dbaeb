"""The lab's "sshd too old" host (#17): a genuinely old OpenSSH (Debian bullseye's 8.4p1,
scripts/install-old-sshd.sh) bind-mounted over /usr/sbin/sshd in the host's namespace, so the
daemon and every `sshd -t`/`sshd -T` a session runs there is 8.4. With CI=true a missing
old sshd fails these tests, never skips."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from kamal_secure.report.model import Severity
from testing.cli import REPO, Result, run_cli
from testing.harden import SUDO
from testing.live import host_project, scan_hosts, ssh_run
from testing.sshd import DEPLOY_USER, HARDENED, HARDENED_OLD, Client, Host, Lab, next_addr

pytestmark = pytest.mark.sshd

NEW_KEX = "sntrup761x25519-sha512@openssh.com"  # OpenSSH 8.5 and later


def deploy_host(lab: Lab, client: Client, *, old: bool, config: str | None = None) -> Host:
    host = lab.start(next_addr(), config, sudoers=SUDO, old=old,
                     authorized={DEPLOY_USER: f'from="127.0.0.0/8" {client.public}'})
    client.trust(host.known_line())
    return host


def banner(host: Host) -> str:
    with socket.create_connection((host.addr, host.port), timeout=10) as sock:
        return sock.recv(256).decode(errors="replace").strip()


def test_the_old_host_is_openssh_84_for_the_daemon_and_the_session(
        lab: Lab, old_sshd: Path, client: Client) -> None:
    host = deploy_host(lab, client, old=True)  # HARDENED_OLD, the lab's baseline on 8.4
    assert banner(host).startswith("SSH-2.0-OpenSSH_8.4p1"), banner(host)
    for command in ("/usr/sbin/sshd -V 2>&1", "sudo -n sshd -V 2>&1"):
        done = ssh_run(client.key, host, client, command)
        assert "OpenSSH_8.4p1" in done.stdout, (command, done.stdout, done.stderr)
    effective = ssh_run(client.key, host, client, "sudo -n sshd -T")  # this host's own files
    assert effective.returncode == 0, effective.stderr
    assert f"allowusers {DEPLOY_USER}" in effective.stdout.splitlines()
    assert "kexalgorithms curve25519-sha256,curve25519-sha256@libssh.org" in effective.stdout


@pytest.mark.parametrize("old", [True, False])
def test_only_the_old_host_rejects_a_kex_of_openssh_85(
        old: bool, lab: Lab, old_sshd: Path, client: Client) -> None:
    host = deploy_host(lab, client, old=old)
    done = ssh_run(client.key, host, client, f"sudo -n sshd -t -o KexAlgorithms={NEW_KEX}")
    if old:
        assert done.returncode != 0, done.stdout + done.stderr
        assert f'Unsupported KEX algorithm "{NEW_KEX}"' in done.stderr
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "OpenSSH_9" in ssh_run(client.key, host, client, "/usr/sbin/sshd -V 2>&1").stdout


def test_the_lab_hardened_config_of_new_sshd_does_not_start_on_84(lab: Lab,
                                                                   old_sshd: Path) -> None:
    with pytest.raises(RuntimeError, match=f'Unsupported KEX algorithm "{NEW_KEX}"'):
        lab.start(next_addr(), HARDENED, old=True)


def test_the_old_hardened_host_passes_the_host_checks(lab: Lab, old_sshd: Path, client: Client,
                                                      tmp_path: Path) -> None:
    host = deploy_host(lab, client, old=True)
    report = scan_hosts(host_project(tmp_path / "app", client, [host.addr]))
    assert report.problems == []
    assert {(f.rule, f.severity) for f in report.findings} == {("KS720", Severity.INFO)}


def test_on_84_kbdinteractiveauthentication_alone_leaves_keyboard_interactive_on(
        lab: Lab, old_sshd: Path, client: Client, tmp_path: Path) -> None:
    """Before 8.7 ChallengeResponseAuthentication decides; BASE's KbdInteractiveAuthentication
    no is accepted and does nothing: a genuinely old host, and checks that see it."""
    config = HARDENED_OLD.replace("ChallengeResponseAuthentication no\n", "")
    host = deploy_host(lab, client, old=True, config=config)
    effective = ssh_run(client.key, host, client, "sudo -n sshd -T").stdout.splitlines()
    assert "kbdinteractiveauthentication yes" in effective
    report = scan_hosts(host_project(tmp_path / "app", client, [host.addr]))
    assert "KS702" in {f.rule for f in report.findings}


def test_an_old_host_starts_again_old(lab: Lab, old_sshd: Path, client: Client) -> None:
    host = deploy_host(lab, client, old=True)
    lab.stop(host)
    lab.respawn(host)
    assert banner(host).startswith("SSH-2.0-OpenSSH_8.4p1"), banner(host)


ONE_OLD_TEST = "tests/test_old_sshd_lab.py::test_an_old_host_starts_again_old"


def run_without_old_sshd(ci: str) -> Result:
    return run_cli(["-q", "-rs", "-p", "no:cacheprovider", ONE_OLD_TEST], REPO,
                   {"CI": ci, "KAMAL_SECURE_TEST_OLD_SSHD": "/nonexistent/sshd"},
                   program=[sys.executable, "-m", "pytest"])


@pytest.mark.usefixtures("sshd_available")  # only the old sshd is missing there
def test_ci_fails_without_the_old_sshd() -> None:
    done = run_without_old_sshd("true")
    assert done.code == 1, done.stdout
    assert "CI=true and the old sshd tests cannot run" in done.stdout
    assert "/nonexistent/sshd is not installed" in done.stdout


@pytest.mark.usefixtures("sshd_available")
def test_elsewhere_skips_without_the_old_sshd() -> None:
    done = run_without_old_sshd("")
    assert done.code == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "/nonexistent/sshd is not installed" in done.stdout
