"""`kamal-secure pin-hosts` against real sshd hosts on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Client, next_addr
from tests.live import write_project
from tests.sshd_hosts import DEPLOY_USER, HARDENED, Lab

pytestmark = pytest.mark.sshd


def pin(app: Path, client: Client, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(client.home), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "kamal_secure", "pin-hosts", *args], cwd=app,
                          env=env, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def test_pins_unhashed_and_is_idempotent(lab: Lab, client: Client, tmp_path: Path) -> None:
    a, b = next_addr(), next_addr()
    host_a, host_b = lab.start(a, HARDENED), lab.start(b, HARDENED)
    app = write_project(tmp_path / "app", client, [a, b])
    dry = pin(app, client, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not (app / ".kamal" / "known_hosts").exists()
    assert "+  config: \".kamal/ssh_config\"" in dry.stdout
    first = pin(app, client, "--yes")
    assert first.returncode == 0, first.stderr
    known = (app / ".kamal" / "known_hosts").read_text()
    assert host_a.known_line() in known
    assert host_b.known_line() in known
    assert "|1|" not in known
    config = (app / ".kamal" / "ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in config
    assert "UserKnownHostsFile .kamal/known_hosts" in config
    deploy = (app / "config" / "deploy.yml").read_text()
    again = pin(app, client, "--yes")
    assert again.returncode == 0
    assert (app / ".kamal" / "known_hosts").read_text() == known
    assert (app / "config" / "deploy.yml").read_text() == deploy
    assert again.stdout.count("pinned    ") == 2


def test_needs_yes_without_a_terminal(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    lab.start(addr, HARDENED)
    app = write_project(tmp_path / "app", client, [addr])
    done = pin(app, client)
    assert done.returncode == 2
    assert not (app / ".kamal" / "known_hosts").exists()


def test_expected_fingerprints(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED)
    app = write_project(tmp_path / "app", client, [addr])
    wrong = pin(app, client, "--yes", "--expect", "SHA256:" + "A" * 43)
    assert wrong.returncode == 1
    assert "UNEXPECTED" in wrong.stderr
    assert not (app / ".kamal" / "known_hosts").exists()
    listed = subprocess.run(["ssh-keygen", "-lf", str(host.etc / "ssh_host_ed25519_key.pub")],
                            capture_output=True, text=True, check=True).stdout
    (tmp_path / "fps.txt").write_text(listed)
    right = pin(app, client, "--yes", "--expect-file", str(tmp_path / "fps.txt"))
    assert right.returncode == 0, right.stderr


def test_changed_key_is_refused_unless_replaced(lab: Lab, client: Client,
                                                tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED)
    app = write_project(tmp_path / "app", client, [addr])
    assert pin(app, client, "--yes").returncode == 0
    before = (app / ".kamal" / "known_hosts").read_text()
    lab.stop(host)
    shutil.rmtree(host.root)
    new = lab.start(addr, HARDENED)
    refused = pin(app, client, "--yes")
    assert refused.returncode == 1
    assert f"CHANGED   {addr}" in refused.stderr
    assert (app / ".kamal" / "known_hosts").read_text() == before
    replaced = pin(app, client, "--yes", "--replace", addr)
    assert replaced.returncode == 0, replaced.stderr
    assert new.known_line() in (app / ".kamal" / "known_hosts").read_text()


def test_unreachable_host_writes_nothing(lab: Lab, client: Client, tmp_path: Path) -> None:
    up, down = next_addr(), next_addr()
    lab.start(up, HARDENED)
    app = write_project(tmp_path / "app", client, [up, down])
    done = pin(app, client, "--yes")
    assert done.returncode == 3
    assert f"UNREACHED {down}" in done.stderr
    assert not (app / ".kamal" / "known_hosts").exists()


def test_our_host_checks_use_the_pinned_file(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    lab.start(addr, HARDENED, authorized={DEPLOY_USER: client.public})
    app = write_project(tmp_path / "app", client, [addr])
    env = dict(os.environ, HOME=str(client.home), NO_COLOR="1")
    scan = [sys.executable, "-m", "kamal_secure", "scan", "--format", "json"]
    before = subprocess.run(scan, cwd=app, env=env, capture_output=True, text=True, check=False)
    assert before.returncode == 3  # unknown host key
    assert pin(app, client, "--yes").returncode == 0
    after = subprocess.run(scan, cwd=app, env=env, capture_output=True, text=True, check=False)
    assert '"problems": []' in after.stdout


def test_through_a_jump_host_whose_own_key_is_verified(lab: Lab, client: Client,
                                                       tmp_path: Path) -> None:
    jump_addr, target_addr = next_addr(), next_addr()
    jump = lab.start(jump_addr, HARDENED.replace("AllowTcpForwarding no",
                                                 "AllowTcpForwarding local"),
                     authorized={DEPLOY_USER: client.public})
    target = lab.start(target_addr, HARDENED)
    extra = f"  proxy: {DEPLOY_USER}@{jump_addr}\n"
    app = write_project(tmp_path / "app", client, [target_addr], extra_ssh=extra)
    unknown_jump = pin(app, client, "--yes")
    assert unknown_jump.returncode == 3  # the jump host's key is not known: no silent trust
    assert "unknown host key" in unknown_jump.stderr
    client.trust(jump.known_line())
    done = pin(app, client, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    known = (app / ".kamal" / "known_hosts").read_text()
    assert target.known_line() in known
    assert jump_addr not in known
