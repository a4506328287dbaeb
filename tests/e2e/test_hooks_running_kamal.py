"""Plain `kamal` with our hooks installed checks the config and hosts the running Kamal uses
(issue 11 item 4): `-c other.yml` and `-d ""` against the real Kamal and real sshd hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.e2e import BIN, TRAP, live_env, run, start
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, next_addr

pytestmark = [pytest.mark.e2e, pytest.mark.sshd]


def _trap(lab: Lab, client: Client) -> str:
    """A second host that offers password login (the cloud-init trap)."""
    addr = next_addr()
    host = lab.start(addr, HARDENED, files=TRAP, authorized={DEPLOY_USER: client.public})
    client.trust(host.known_line())
    return addr


@pytest.mark.parametrize("spelling", [["-c", "config/other.yml"],
                                      ["--config-file=config/other.yml"]])
def test_hook_checks_the_config_file_kamal_was_given(spelling: list[str], lab: Lab,
                                                     client: Client, tmp_path: Path,
                                                     real_kamal: Path) -> None:
    host, app = start(lab, client, tmp_path, hardened=True)
    trap = _trap(lab, client)
    deploy = (app / "config" / "deploy.yml").read_text()
    (app / "config" / "other.yml").write_text(deploy.replace(host.addr, trap))
    env = live_env(real_kamal, client)
    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    result = run([str(real_kamal), "server", "exec", *spelling, "whoami"], app, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Hook `pre-connect` failed" in output
    assert "KS701" in output  # the trap host of other.yml was checked, not deploy.yml's
    assert f"Running /usr/bin/env whoami on {trap}" not in output


def test_hook_refuses_an_empty_destination(lab: Lab, client: Client, tmp_path: Path,
                                          real_kamal: Path) -> None:
    """`-d ""` makes Kamal merge config/deploy..yml; the hook refuses rather than guess."""
    host, app = start(lab, client, tmp_path, hardened=True)
    trap = _trap(lab, client)
    (app / "config" / "deploy..yml").write_text(f"servers:\n  - {trap}\n")
    env = live_env(real_kamal, client)
    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    result = run([str(real_kamal), "server", "exec", "-d", "", "whoami"], app, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Hook `pre-connect` failed" in output
    assert "empty destination" in output
    assert f"Running /usr/bin/env whoami on {trap}" not in output
    plain = run([str(real_kamal), "server", "exec", "whoami"], app, env)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # the same hooks, no -d
    assert f"Running /usr/bin/env whoami on {host.addr}" in plain.stdout + plain.stderr
