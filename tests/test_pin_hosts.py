"""`kamal-secure pin-hosts` against real sshd hosts on loopback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testing.cli import Result, run_cli
from testing.live import host_project
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, next_addr

pytestmark = pytest.mark.sshd


def pin(app: Path, client: Client, *args: str) -> Result:
    return run_cli(["pin-hosts", *args], app, {"HOME": str(client.home)}, timeout=60)


def test_pins_unhashed_and_is_idempotent(lab: Lab, client: Client, tmp_path: Path) -> None:
    a, b = next_addr(), next_addr()
    host_a, host_b = lab.start(a, HARDENED), lab.start(b, HARDENED)
    app = host_project(tmp_path / "app", client, [a, b])
    dry = pin(app, client, "--dry-run")
    assert dry.code == 0, dry.stderr
    assert not (app / ".kamal" / "known_hosts").exists()
    assert "+  config: \".kamal/ssh_config\"" in dry.stdout
    first = pin(app, client, "--yes")
    assert first.code == 0, first.stderr
    known = (app / ".kamal" / "known_hosts").read_text()
    assert host_a.known_line() in known
    assert host_b.known_line() in known
    assert "|1|" not in known
    config = (app / ".kamal" / "ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in config
    assert "UserKnownHostsFile .kamal/known_hosts" in config
    deploy = (app / "config" / "deploy.yml").read_text()
    again = pin(app, client, "--yes")
    assert again.code == 0
    assert (app / ".kamal" / "known_hosts").read_text() == known
    assert (app / "config" / "deploy.yml").read_text() == deploy
    assert again.stdout.count("pinned    ") == 2


def test_needs_yes_without_a_terminal(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    lab.start(addr, HARDENED)
    app = host_project(tmp_path / "app", client, [addr])
    done = pin(app, client)
    assert done.code == 2
    assert not (app / ".kamal" / "known_hosts").exists()


def test_expected_fingerprints(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED)
    app = host_project(tmp_path / "app", client, [addr])
    wrong = pin(app, client, "--yes", "--expect", "SHA256:" + "A" * 43)
    assert wrong.code == 1
    assert "UNEXPECTED" in wrong.stderr
    assert not (app / ".kamal" / "known_hosts").exists()
    listed = subprocess.run(["ssh-keygen", "-lf", str(host.etc / "ssh_host_ed25519_key.pub")],
                            capture_output=True, text=True, check=True).stdout
    (tmp_path / "fps.txt").write_text(listed)
    right = pin(app, client, "--yes", "--expect-file", str(tmp_path / "fps.txt"))
    assert right.code == 0, right.stderr


def test_changed_key_is_refused_unless_replaced(lab: Lab, client: Client,
                                                tmp_path: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED)
    app = host_project(tmp_path / "app", client, [addr])
    assert pin(app, client, "--yes").code == 0
    before = (app / ".kamal" / "known_hosts").read_text()
    lab.stop(host)
    shutil.rmtree(host.root)
    new = lab.start(addr, HARDENED)
    refused = pin(app, client, "--yes")
    assert refused.code == 1
    assert f"CHANGED   {addr}" in refused.stderr
    assert (app / ".kamal" / "known_hosts").read_text() == before
    replaced = pin(app, client, "--yes", "--replace", addr)
    assert replaced.code == 0, replaced.stderr
    assert new.known_line() in (app / ".kamal" / "known_hosts").read_text()


def test_unreachable_host_writes_nothing(lab: Lab, client: Client, tmp_path: Path) -> None:
    up, down = next_addr(), next_addr()
    lab.start(up, HARDENED)
    app = host_project(tmp_path / "app", client, [up, down])
    done = pin(app, client, "--yes")
    assert done.code == 3
    assert f"UNREACHED {down}" in done.stderr
    assert not (app / ".kamal" / "known_hosts").exists()


def test_our_host_checks_use_the_pinned_file(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    lab.start(addr, HARDENED, authorized={DEPLOY_USER: client.public})
    app = host_project(tmp_path / "app", client, [addr])
    env = {"HOME": str(client.home)}
    scan = ["scan", "--format", "json"]
    before = run_cli(scan, app, env)
    assert before.code == 3  # unknown host key
    assert pin(app, client, "--yes").code == 0
    after = run_cli(scan, app, env)
    assert '"problems": []' in after.stdout


def test_through_a_jump_host_whose_own_key_is_verified(lab: Lab, client: Client,
                                                       tmp_path: Path) -> None:
    jump_addr, target_addr = next_addr(), next_addr()
    jump = lab.start(jump_addr, HARDENED.replace("AllowTcpForwarding no",
                                                 "AllowTcpForwarding local"),
                     authorized={DEPLOY_USER: client.public})
    target = lab.start(target_addr, HARDENED)
    extra = f"  proxy: {DEPLOY_USER}@{jump_addr}\n"
    app = host_project(tmp_path / "app", client, [target_addr], extra_ssh=extra)
    unknown_jump = pin(app, client, "--yes")
    assert unknown_jump.code == 3  # the jump host's key is not known: no silent trust
    assert "unknown host key" in unknown_jump.stderr
    client.trust(jump.known_line())
    done = pin(app, client, "--yes")
    assert done.code == 0, done.stdout + done.stderr
    known = (app / ".kamal" / "known_hosts").read_text()
    assert target.known_line() in known
    assert jump_addr not in known
