"""`kamal-secure rotate-key`: the crash matrix against real sshd hosts on loopback.

After a crash at every step, every host still accepts a key the operator holds and
deploy.yml names a key that works on every host; then --resume finishes and --abort
rolls back. Logins are checked with the real OpenSSH client.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamal_secure.ops.rotate import STEPS
from tests.conftest import Client, next_addr
from tests.live import write_project
from tests.sshd_hosts import DEPLOY_USER, HARDENED, Host, Lab

pytestmark = pytest.mark.sshd
USER_FILE = f"Match User {DEPLOY_USER}\n  AuthorizedKeysFile .ssh/authorized_keys\n"


@pytest.fixture
def user_keys(sshd_available: None) -> Iterator[Path]:
    entry = pwd.getpwnam(DEPLOY_USER)
    ssh = Path(entry.pw_dir) / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh, entry.pw_uid, entry.pw_gid)
    path = ssh / "authorized_keys"
    yield path
    path.unlink(missing_ok=True)


def setup(lab: Lab, client: Client, tmp_path: Path, user_keys: Path,
          n: int = 2) -> tuple[Path, list[Host]]:
    hosts = [lab.start(next_addr(), HARDENED + USER_FILE) for _ in range(n)]
    for host in hosts:
        client.trust(host.known_line())
    user_keys.write_text(client.public + "\n")
    entry = pwd.getpwnam(DEPLOY_USER)
    os.chown(user_keys, entry.pw_uid, entry.pw_gid)
    user_keys.chmod(0o600)
    return write_project(tmp_path / "app", client, [h.addr for h in hosts]), hosts


def rotate(app: Path, client: Client, *args: str, crash: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(client.home), NO_COLOR="1")
    env.pop("SSH_AUTH_SOCK", None)
    if crash:
        env["KAMAL_SECURE_TEST_CRASH_AFTER"] = crash
    return subprocess.run([sys.executable, "-m", "kamal_secure", "rotate-key", *args], cwd=app,
                          env=env, capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


def logs_in(key: Path, host: Host, client: Client) -> bool:
    if not key.exists():
        return False
    done = subprocess.run(
        ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={client.home / '.ssh' / 'known_hosts'}",
         "-o", "StrictHostKeyChecking=yes", "-F", "/dev/null", f"{DEPLOY_USER}@{host.addr}",
         "true"], capture_output=True, timeout=30, check=False,
        env=dict(os.environ, HOME=str(client.home), SSH_AUTH_SOCK=""))
    return done.returncode == 0


def configured_key(app: Path) -> Path:
    text = (app / "config" / "deploy.yml").read_text()
    match = re.search(r'keys: \["([^"]+)"\]', text)
    assert match, text
    return Path(match.group(1))


def held_keys(client: Client) -> list[Path]:
    return [p for p in client.key.parent.iterdir()
            if p.name.startswith("kamal_deploy_key") and not p.name.endswith(".pub")
            and ".retired-" not in p.name]


def assert_invariant(app: Path, hosts: list[Host], client: Client) -> None:
    named = configured_key(app)
    for host in hosts:
        assert logs_in(named, host, client), f"deploy.yml's key fails on {host.addr}"
        assert any(logs_in(k, host, client) for k in held_keys(client))


def test_full_rotation(lab: Lab, client: Client, tmp_path: Path, user_keys: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, user_keys)
    old = client.key
    done = rotate(app, client, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    new = configured_key(app)
    assert new != old
    assert all(logs_in(new, h, client) for h in hosts)
    assert not old.exists()
    assert list(old.parent.glob(old.name + ".retired-*"))
    assert not any(logs_in(p, h, client) for h in hosts
                   for p in old.parent.glob(old.name + ".retired-*"))
    assert not (app / ".kamal" / "secure-rotation.json").exists()
    assert user_keys.read_text().count("ssh-ed25519") == 1


@pytest.mark.parametrize("step", STEPS[1:])
def test_crash_then_resume(step: str, lab: Lab, client: Client, tmp_path: Path,
                           user_keys: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, user_keys)
    crashed = rotate(app, client, "--yes", crash=step)
    assert crashed.returncode == 99, crashed.stdout + crashed.stderr
    assert json.loads((app / ".kamal" / "secure-rotation.json").read_text())["step"] == step
    assert_invariant(app, hosts, client)
    assert rotate(app, client, "--yes").returncode == 2  # a rotation is in progress
    resumed = rotate(app, client, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_invariant(app, hosts, client)
    assert configured_key(app) != client.key
    assert not (app / ".kamal" / "secure-rotation.json").exists()


@pytest.mark.parametrize("step", STEPS[1:5])
def test_crash_then_abort(step: str, lab: Lab, client: Client, tmp_path: Path,
                          user_keys: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, user_keys)
    before = (app / "config" / "deploy.yml").read_text()
    assert rotate(app, client, "--yes", crash=step).returncode == 99
    aborted = rotate(app, client, "--abort")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert (app / "config" / "deploy.yml").read_text() == before
    assert held_keys(client) == [client.key]
    assert user_keys.read_text().splitlines() == [client.public]
    assert_invariant(app, hosts, client)


def test_abort_after_removal_is_refused(lab: Lab, client: Client, tmp_path: Path,
                                       user_keys: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, user_keys, n=1)
    assert rotate(app, client, "--yes", crash="removed").returncode == 99
    refused = rotate(app, client, "--abort")
    assert refused.returncode == 3
    assert "too late to abort" in refused.stderr
    assert_invariant(app, hosts, client)


def test_host_down_before_the_switch_rolls_back(lab: Lab, client: Client, tmp_path: Path,
                                                user_keys: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, user_keys, n=1)
    deploy = app / "config" / "deploy.yml"
    before = deploy.read_text()
    deploy.write_text(before.replace(f"    - {hosts[0].addr}\n",
                                     f"    - {hosts[0].addr}\n    - {next_addr()}\n"))
    done = rotate(app, client, "--yes")
    assert done.returncode == 3
    assert held_keys(client) == [client.key]
    assert user_keys.read_text().splitlines() == [client.public]
    assert not (app / ".kamal" / "secure-rotation.json").exists()
