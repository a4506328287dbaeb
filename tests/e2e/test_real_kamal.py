"""End to end against the real Kamal (installed by scripts/install-kamal.sh; run by `make e2e`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testing.e2e import (
    BIN,
    KAMAL_HARDENED,
    TRAP,
    commit_all,
    env_for,
    live_app,
    live_env,
    run,
    same,
    start,
)
from testing.sshd import DEPLOY_USER, Client, Lab, keygen, next_addr

pytestmark = pytest.mark.e2e
INSECURE = """\
service: shop
image: acme/shop
servers:
  - 127.0.0.1
registry:
  username: acme
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
ssh:
  user: root
  port: 1
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "config").mkdir(parents=True)
    (root / ".kamal").mkdir()
    (root / "config" / "deploy.yml").write_text(INSECURE)
    (root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD\n")
    return commit_all(root)


@pytest.mark.parametrize("args", [["version"], ["config"], ["-h", "127.0.0.1", "details"],
                                  ["details", "-h", "127.0.0.1"], ["docs", "ssh"]])
def test_passthrough_matches_real_kamal_exactly(args: list[str], app: Path,
                                                real_kamal: Path) -> None:
    env = env_for(real_kamal)
    direct = run([str(real_kamal), *args], app, env)
    ours = run([f"{BIN}/kamal-secure", *args], app, env)
    assert ours.returncode == direct.returncode
    assert same(ours.stdout) == same(direct.stdout)
    assert same(ours.stderr) == same(direct.stderr)


def test_gated_command_refused_before_kamal_starts(app: Path, real_kamal: Path) -> None:
    result = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app,
                 env_for(real_kamal, KAMAL_SECURE_OFFLINE="1"))
    assert result.returncode == 1
    assert "KS103" in result.stderr
    assert "INFO" not in result.stdout + result.stderr  # kamal never ran


@pytest.mark.sshd
@pytest.mark.parametrize("hardened", [True, False], ids=["hardened", "cloud-init-trap"])
def test_gated_server_exec_against_a_real_host(hardened: bool, lab: Lab, client: Client,
                                               tmp_path: Path, real_kamal: Path) -> None:
    _, app = start(lab, client, tmp_path, hardened)
    result = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app,
                 live_env(real_kamal, client))
    output = result.stdout + result.stderr
    if hardened:
        assert result.returncode == 0, output
        assert DEPLOY_USER in result.stdout  # the real kamal ran whoami on the real host
    else:
        assert result.returncode == 1, output
        assert "KS701" in output
        assert "Running" not in output  # refused before kamal started


@pytest.mark.sshd
@pytest.mark.parametrize("hardened", [True, False], ids=["hardened", "cloud-init-trap"])
def test_plain_kamal_with_our_hooks_against_a_real_host(
    hardened: bool, lab: Lab, client: Client, tmp_path: Path, real_kamal: Path
) -> None:
    host, app = start(lab, client, tmp_path, hardened)
    addr = host.addr
    env = live_env(real_kamal, client)
    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    result = run([str(real_kamal), "server", "exec", "whoami"], app, env)
    output = result.stdout + result.stderr
    assert "reg-e2e-Vq7Lm2Xz9Tn4" not in output  # the hook got the secret, never printed it
    if hardened:
        assert result.returncode == 0, output
        assert DEPLOY_USER in output
    else:
        assert result.returncode == 1, output
        assert "Hook `pre-connect` failed" in output
        assert "KS701" in output
        assert f"Running /usr/bin/env whoami on {addr}" not in output  # Kamal's own wording


def logins(host_log: str) -> int:
    return host_log.count("Accepted publickey for")


@pytest.mark.sshd
def test_hook_skips_host_checks_the_wrapper_just_ran(lab: Lab, client: Client, tmp_path: Path,
                                                     real_kamal: Path) -> None:
    host, app = start(lab, client, tmp_path, True)
    addr = host.addr
    env = live_env(real_kamal, client)
    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    before = logins(host.log())
    wrapped = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app, env)
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr
    assert logins(host.log()) - before == 2  # the gate's check and kamal: not the hook
    before = logins(host.log())
    plain = run([str(real_kamal), "server", "exec", "whoami"], app, env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert logins(host.log()) - before == 2  # the hook's check and kamal
    (app / ".kamal" / "secure.yml").write_text("hosts:\n  timeout: 6\n")  # a change
    forged = dict(env, KAMAL_SECURE_GATE_DIGEST="0" * 64, KAMAL_SECURE_GATE_HOSTS=addr)
    before = logins(host.log())
    assert run([str(real_kamal), "server", "exec", "whoami"], app, forged).returncode == 0
    assert logins(host.log()) - before == 2  # a digest that does not match: checked again


@pytest.mark.sshd
@pytest.mark.parametrize("hardened", [True, False], ids=["hardened", "cloud-init-trap"])
def test_plain_kamal_deploy_with_hooks_up_to_docker(hardened: bool, lab: Lab, client: Client,
                                                    tmp_path: Path, real_kamal: Path) -> None:
    _, app = start(lab, client, tmp_path, hardened)
    env = live_env(real_kamal, client)
    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    result = run([str(real_kamal), "deploy"], app, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # this machine has no Docker either way
    if hardened:
        assert "Hook `pre-connect` failed" not in output
        assert "pre-connect on localhost" in output
        assert "docker" in output.lower()  # it got as far as needing Docker
    else:
        assert "Hook `pre-connect` failed" in output
        assert "KS701" in output


@pytest.mark.sshd
def test_pin_hosts_makes_kamal_itself_strict(lab: Lab, client: Client, tmp_path: Path,
                                             real_kamal: Path) -> None:
    addr = next_addr()
    host = lab.start(addr, KAMAL_HARDENED, authorized={DEPLOY_USER: client.public})
    app = live_app(tmp_path / "app", client, addr)  # the host is in no known_hosts file
    env = live_env(real_kamal, client)
    known = client.home / ".ssh" / "known_hosts"
    tofu = run([str(real_kamal), "server", "exec", "whoami"], app, env)
    assert tofu.returncode == 0, tofu.stdout  # before: Kamal trusts an unknown key on first use
    known.write_text("")  # forget what Kamal learnt on first use
    pinned = run([f"{BIN}/kamal-secure", "pin-hosts", "--yes"], app, env)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert f"{addr} {host.public_key}" in (app / ".kamal" / "known_hosts").read_text()
    assert 'config: ".kamal/ssh_config"' in (app / "config" / "deploy.yml").read_text()
    ok = run([str(real_kamal), "server", "exec", "whoami"], app, env)
    assert ok.returncode == 0, ok.stdout  # the pinned key is accepted
    assert known.read_text() == ""  # and nothing was learnt on the side
    lab.stop(host)
    shutil.rmtree(host.root)
    lab.start(addr, KAMAL_HARDENED, authorized={DEPLOY_USER: client.public})  # new host key
    refused = run([str(real_kamal), "server", "exec", "whoami"], app, env)
    assert refused.returncode == 1, refused.stdout
    assert "whoami" not in refused.stdout.split("Running", 1)[-1].split("\n", 2)[-1]
    assert "HostKeyMismatch" in refused.stdout or "fingerprint" in refused.stdout
    again = run([f"{BIN}/kamal-secure", "pin-hosts", "--yes"], app, env)
    assert again.returncode == 1
    assert "CHANGED" in again.stderr


@pytest.mark.sshd
def test_harden_then_the_gate_passes_at_high_and_kamal_still_connects(
    lab: Lab, client: Client, tmp_path: Path, real_kamal: Path
) -> None:
    addr = next_addr()
    host = lab.start(addr, "", files=TRAP, authorized={DEPLOY_USER: client.public},
                     sudoers=f"{DEPLOY_USER} ALL=(root) NOPASSWD: ALL\n")
    client.trust(host.known_line())
    app = live_app(tmp_path / "app", client, addr)
    env = live_env(real_kamal, client)
    env.pop("KAMAL_SECURE_FAIL_ON")  # the default threshold: high
    refused = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app, env)
    assert refused.returncode == 1
    hardened = run([f"{BIN}/kamal-secure", "harden", "--yes"], app, env)
    assert hardened.returncode == 0, hardened.stdout + hardened.stderr
    passed = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app, env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert DEPLOY_USER in passed.stdout  # Kamal's net-ssh still negotiates with the host


@pytest.mark.sshd
def test_guarded_gate_refuses_on_drift_before_kamal_runs(lab: Lab, client: Client,
                                                         tmp_path: Path, real_kamal: Path) -> None:
    """Issue 18 through the real Kamal: with an approved state, a key added on the host since
    is drift (KS751), and the guarded gate stops Kamal before it runs anything there."""
    host, app = start(lab, client, tmp_path)
    env = live_env(real_kamal, client)
    (app / ".kamal" / "secure.yml").write_text("rules:\n  KS751: {severity: critical}\n")
    approve = run([f"{BIN}/kamal-secure", "snapshot", "--approve"], app, env)
    assert approve.returncode == 0, approve.stdout + approve.stderr
    passes = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app, env)
    assert passes.returncode == 0, passes.stdout + passes.stderr
    assert DEPLOY_USER in passes.stdout  # approved and unchanged: Kamal ran
    other = keygen(tmp_path / "intruder", comment="intruder@laptop")
    host.write(f"authorized_keys/{DEPLOY_USER}", client.public + "\n" + other + "\n")
    refused = run([f"{BIN}/kamal-secure", "server", "exec", "whoami"], app, env)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "KS751" in output
    assert "Running" not in output  # Kamal ran nothing on the host
