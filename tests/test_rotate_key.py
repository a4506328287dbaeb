"""`kamal-secure rotate-key`: the crash matrix against real sshd hosts on loopback.

After a crash at every step, every host still accepts a key the operator holds and
deploy.yml names a key that works on every host; then --resume finishes and --abort
rolls back. Logins are checked with the real OpenSSH client.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from kamal_secure.remediate.rotate import STEPS
from testing.cli import Result, run_cli
from testing.live import USER_FILE, configured_key, host_project, keys_file, logs_in
from testing.sshd import DEPLOY_USER, HARDENED, Client, Host, Lab, next_addr

pytestmark = pytest.mark.sshd



def setup(lab: Lab, client: Client, tmp_path: Path, n: int = 2) -> tuple[Path, list[Host]]:
    hosts = [lab.start(next_addr(), HARDENED + USER_FILE, own_home=True) for _ in range(n)]
    entry = pwd.getpwnam(DEPLOY_USER)
    for host in hosts:
        client.trust(host.known_line())
        keys_file(host).write_text(client.public + "\n")
        os.chown(keys_file(host), entry.pw_uid, entry.pw_gid)
        keys_file(host).chmod(0o600)
    return host_project(tmp_path / "app", client, [h.addr for h in hosts]), hosts


def rotate(app: Path, client: Client, *args: str, crash: str | None = None
           ) -> Result:
    env = {"HOME": str(client.home)}
    if crash:
        env["KAMAL_SECURE_TEST_CRASH_AFTER"] = crash
    return run_cli(["rotate-key", *args], app, env)


def held_keys(client: Client) -> list[Path]:
    return [p for p in client.key.parent.iterdir()
            if p.name.startswith("kamal_deploy_key") and not p.name.endswith(".pub")
            and ".retired-" not in p.name]


def assert_invariant(app: Path, hosts: list[Host], client: Client) -> None:
    named = configured_key(app)
    for host in hosts:
        assert logs_in(named, host, client), f"deploy.yml's key fails on {host.addr}"
        assert any(logs_in(k, host, client) for k in held_keys(client))


def test_full_rotation(lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts = setup(lab, client, tmp_path)
    old = client.key
    # deploy.yml is a 0600 symlink into a shared config directory: written through, kept 0600
    shared = tmp_path / "shared-deploy.yml"
    (app / "config" / "deploy.yml").rename(shared)
    shared.chmod(0o600)
    (app / "config" / "deploy.yml").symlink_to(shared)
    done = rotate(app, client, "--yes")
    assert done.code == 0, done.stdout + done.stderr
    assert (app / "config" / "deploy.yml").is_symlink()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600
    new = configured_key(app)
    assert new != old
    assert all(logs_in(new, h, client) for h in hosts)
    assert not old.exists()
    assert list(old.parent.glob(old.name + ".retired-*"))
    assert not old.with_name(old.name + ".pub").exists()  # the .pub went with it
    assert list(old.parent.glob(old.name + ".retired-*.pub"))
    assert not any(logs_in(p, h, client) for h in hosts
                   for p in old.parent.glob(old.name + ".retired-*") if p.suffix != ".pub")
    assert not (app / ".kamal" / "secure-rotation.json").exists()
    assert all(keys_file(h).read_text().count("ssh-ed25519") == 1 for h in hosts)


@pytest.mark.parametrize("step", STEPS[1:])
def test_crash_then_resume(step: str, lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts = setup(lab, client, tmp_path)
    crashed = rotate(app, client, "--yes", crash=step)
    assert crashed.code == 99, crashed.stdout + crashed.stderr
    assert json.loads((app / ".kamal" / "secure-rotation.json").read_text())["step"] == step
    assert_invariant(app, hosts, client)
    assert rotate(app, client, "--yes").code == 2  # a rotation is in progress
    resumed = rotate(app, client, "--resume")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    assert_invariant(app, hosts, client)
    assert configured_key(app) != client.key
    assert not (app / ".kamal" / "secure-rotation.json").exists()


@pytest.mark.parametrize("step", STEPS[1:6])  # up to "removed": the old key goes back
def test_crash_then_abort(step: str, lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts = setup(lab, client, tmp_path)
    deploy = app / "config" / "deploy.yml"
    # a hand-formatted keys line, which a round trip through the YAML editor would change
    deploy.write_text(deploy.read_text().replace(f'keys: ["{client.key}"]',
                                                 f'keys: [ "{client.key}" ]   # deploy key'))
    before = deploy.read_text()
    assert rotate(app, client, "--yes", crash=step).code == 99
    aborted = rotate(app, client, "--abort")
    assert aborted.code == 0, aborted.stdout + aborted.stderr
    assert (app / "config" / "deploy.yml").read_text() == before  # byte for byte
    assert held_keys(client) == [client.key]
    assert all(keys_file(h).read_text().splitlines() == [client.public] for h in hosts)
    assert_invariant(app, hosts, client)


def test_abort_after_retirement_is_refused(lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, n=1)
    assert rotate(app, client, "--yes", crash="retired").code == 99
    refused = rotate(app, client, "--abort")
    assert refused.code == 3
    assert "too late to abort" in refused.stderr
    assert_invariant(app, hosts, client)
    assert rotate(app, client, "--resume").code == 0
    assert_invariant(app, hosts, client)


def test_host_down_before_the_switch_rolls_back(lab: Lab, client: Client, tmp_path: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, n=1)
    deploy = app / "config" / "deploy.yml"
    before = deploy.read_text()
    deploy.write_text(before.replace(f"    - {hosts[0].addr}\n",
                                     f"    - {hosts[0].addr}\n    - {next_addr()}\n"))
    done = rotate(app, client, "--yes")
    assert done.code == 3
    assert "rolled back: deploy.yml names the old key" in done.stderr
    assert f"  {hosts[0].addr}: the old key logs in; the new key is removed" in done.stderr
    assert held_keys(client) == [client.key]
    assert all(keys_file(h).read_text().splitlines() == [client.public] for h in hosts)
    assert not (app / ".kamal" / "secure-rotation.json").exists()


def test_a_host_down_at_the_verify_step_is_the_one_blamed(lab: Lab, client: Client,
                                                          tmp_path: Path) -> None:
    app, hosts = setup(lab, client, tmp_path, n=2)
    assert rotate(app, client, "--yes", crash="added").code == 99
    lab.stop(hosts[1])  # it drops before the verify step
    resumed = rotate(app, client, "--resume")
    assert resumed.code == 3, resumed.stdout + resumed.stderr
    blamed = resumed.stderr
    assert f"{hosts[1].addr}: the new key alone cannot log in" in blamed
    assert "the automatic rollback did not finish" in blamed
    assert f"{hosts[1].addr}: cannot log in" in blamed
    assert f"{hosts[0].addr}: cannot" not in blamed
    assert f"{hosts[0].addr}: the new" not in blamed
    assert configured_key(app) == client.key  # never switched to a key not proven everywhere
    assert rotate(app, client, "--resume").code == 3  # an abort has started: finish it
    lab.respawn(hosts[1])
    aborted = rotate(app, client, "--abort")
    assert aborted.code == 0, aborted.stdout + aborted.stderr
    assert held_keys(client) == [client.key]
    assert all(keys_file(h).read_text().splitlines() == [client.public] for h in hosts)
    assert_invariant(app, hosts, client)
