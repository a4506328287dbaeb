"""First day: Kamal's own `kamal init` template in a stock Rails-style app, taken from refused
to passing by following only what kamal-secure prints, against a loopback "cloud" host (the
cloud-init PasswordAuthentication trap, a sudo-capable user with the user's personal key).

The only thing typed that the tool did not print: the host address (the user's server) and
the deploy user's name (`--user deploy` in the printed command names the account that exists
on the host, kshdeploy here)."""

from __future__ import annotations

import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.e2e import BIN, commit_all, env_for, run
from testing.sshd import DEPLOY_USER, Lab, keygen, next_addr

pytestmark = [pytest.mark.e2e, pytest.mark.sshd]
SUDO = f"{DEPLOY_USER} ALL=(root) NOPASSWD: ALL\n"
TRAP = {"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
# A stock cloud image: OpenSSH's defaults, the deploy user's own ~/.ssh/authorized_keys read
# too (the lab keeps its keys in /etc/ssh/authorized_keys/%u), nothing hardened.
CLOUD = (f"Match User {DEPLOY_USER}\n"
         f"  AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys\n")
RAILS = {
    "Gemfile": 'source "https://rubygems.org"\ngem "rails", "~> 8.0"\n'
               'gem "kamal", require: false\n',
    "Gemfile.lock": "GEM\n  remote: https://rubygems.org/\n  specs:\n    kamal (2.12.0)\n"
                    "      sshkit (>= 1.23.0, < 2.0)\n\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n"
                    "  kamal\n  rails (~> 8.0)\n",
    "Dockerfile": "FROM ruby:3.3-slim\nWORKDIR /rails\nCOPY . .\nCMD [\"bin/rails\", \"s\"]\n",
    "config/routes.rb": "Rails.application.routes.draw do\nend\n",
    "app/controllers/application_controller.rb":
        "class ApplicationController < ActionController::Base\nend\n",
}


class Transcript:
    def __init__(self, app: Path, env: dict[str, str]) -> None:
        self.app, self.env = app, env
        self.commands: list[str] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.commands.append(" ".join(args))
        program = args[0] if args[0] != "kamal-secure" else f"{BIN}/kamal-secure"
        return run([program, *args[1:]], self.app, self.env)


def _rails_app(root: Path, real_kamal: Path, env: dict[str, str], addr: str) -> Path:
    for name, text in RAILS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    init = run([str(real_kamal), "init"], root, env)
    assert init.returncode == 0, init.stdout + init.stderr
    deploy = root / "config" / "deploy.yml"
    text = deploy.read_text()
    assert "192.168.0.1" in text  # Kamal's own template
    deploy.write_text(text.replace("192.168.0.1", addr))  # the user's server
    return commit_all(root, "kamal init")


def _printed(output: str, command: str) -> str:
    """The printed command line that starts with ``command`` (proof we follow the output)."""
    found = re.search(rf"(?m)^\s*(?:\d+\.\s+)?({re.escape(command)}[^\n]*?)\s*$", output)
    assert found, f"`{command}` not printed:\n{output}"
    return found.group(1)


@pytest.fixture
def deploy_user_keys() -> Iterator[None]:
    """authorize writes the real kshdeploy's ~/.ssh/authorized_keys: put it back afterwards."""
    path = Path(pwd.getpwnam(DEPLOY_USER).pw_dir) / ".ssh" / "authorized_keys"
    before = path.read_bytes() if path.exists() else None
    yield
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)


@pytest.mark.usefixtures("deploy_user_keys")
def test_first_day_from_kamal_init_to_passing(lab: Lab, tmp_path: Path,
                                              real_kamal: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    personal = keygen(home / ".ssh" / "id_ed25519", "me@laptop")  # the key that works today
    addr = next_addr()
    host = lab.start(addr, CLOUD, files=TRAP, authorized={DEPLOY_USER: personal}, sudoers=SUDO)
    (home / ".ssh" / "known_hosts").write_text(host.known_line())  # ssh'd there before
    env = env_for(real_kamal, HOME=str(home), USER="me")
    env.pop("SSH_AUTH_SOCK", None)
    app = _rails_app(tmp_path / "shop", real_kamal, env, addr)
    ks = Transcript(app, env)

    refused = ks("kamal-secure", "server", "exec", "whoami")
    assert refused.returncode in (1, 3), refused.stdout + refused.stderr  # 3: root login fails
    assert "KS100" in refused.stderr
    assert "refused to run" in refused.stderr

    plan = ks("kamal-secure", "doctor")
    assert plan.returncode == 0, plan.stderr
    keygen_line = _printed(plan.stdout, "kamal-secure keygen --write-config --user deploy")
    made = ks(*keygen_line.replace("--user deploy", f"--user {DEPLOY_USER}").split())
    assert made.returncode == 0, made.stderr
    written = (app / "config" / "deploy.yml").read_text()
    assert "forward_agent: false" in written  # the installed Kamal is 2.12: it has the key
    assert f"user: {DEPLOY_USER}" in written

    authorize = _printed(made.stdout, "1. kamal-secure authorize").removeprefix("1. ").split()[0:2]
    result = ks(*authorize, "--yes", "--identity", str(home / ".ssh" / "id_ed25519"))
    assert result.returncode == 0, result.stdout + result.stderr
    harden = _printed(made.stdout, "2. kamal-secure harden").removeprefix("2. ").split()[0:2]
    assert "AllowTcpForwarding remote" in ks(*harden, "--dry-run").stdout  # localhost:5555
    result = ks(*harden, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    pin = _printed(made.stdout, "3. kamal-secure pin-hosts").removeprefix("3. ").split()[0:2]
    result = ks(*pin, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr

    left = ks("kamal-secure", "doctor")
    scan = ks("kamal-secure", "scan")
    assert scan.returncode == 0, left.stdout + scan.stdout + scan.stderr
    assert "KS713" in scan.stdout  # info: remote forwarding allowed for the local registry
    assert "Kamal's local registry" in scan.stdout

    passed = ks("kamal-secure", "server", "exec", "whoami")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert DEPLOY_USER in passed.stdout  # the real Kamal, as the deploy user, with the new key
    print("\nfirst-day transcript:\n" + "\n".join(f"$ {c}" for c in ks.commands))
    print(f"\nfirst doctor:\n{plan.stdout}\nlast doctor:\n{left.stdout}\nscan:\n{scan.stdout}")


def test_the_version_read_from_the_real_kamal_is_what_it_says(tmp_path: Path,
                                                             real_kamal: Path) -> None:
    """The gate reads the version from kamal's files (never runs it); `kamal version` agrees."""
    from kamal_secure.facts import kamal_version

    said = run([str(real_kamal), "version"], tmp_path, env_for(real_kamal)).stdout.strip()
    env = {"PATH": str(real_kamal.parent)}
    found = kamal_version.from_kamal(env, tmp_path)
    assert found is not None
    assert kamal_version.show(found.version) == said
