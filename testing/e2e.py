"""Helpers of the e2e tier: the real Kamal (scripts/install-kamal.sh) beside kamal-secure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from testing.cli import clean_env
from testing.live import host_project
from testing.sshd import DEPLOY_USER, HARDENED, Client, Host, Lab, next_addr

BIN = str(Path(sys.executable).parent)  # kamal-secure, installed in this venv


def commit_all(root: Path, message: str = "init") -> Path:
    """``git init`` (if needed) and commit everything: Kamal wants a git repository."""
    git = ["git", "-C", str(root), "-c", "user.email=e2e@example.com", "-c", "user.name=e2e"]
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)
    return root


def env_for(real_kamal: Path, **extra: str) -> dict[str, str]:
    return clean_env({"PATH": os.pathsep.join([BIN, str(real_kamal.parent), "/usr/bin", "/bin"]),
                      "KAMAL_REGISTRY_PASSWORD": "reg-e2e-Vq7Lm2Xz9Tn4", **extra})


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          check=False)


def same(text: str) -> str:
    """Kamal tags each command with a random id: [dc541f25]."""
    return re.sub(r"\[[0-9a-f]{8}\]", "[id]", text)


TRAP = {"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
# Kamal's net-ssh speaks curve25519 only with the x25519 gem, which Debian's Kamal lacks:
# a host offering only curve25519/sntrup key exchange locks Kamal out ("could not settle on
# kex algorithm"). Hardened for Kamal means keeping an ECDH (or DH group exchange) kex too.
KAMAL_HARDENED = HARDENED.replace(
    "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,",
    "KexAlgorithms sntrup761x25519-sha512@openssh.com,ecdh-sha2-nistp256,curve25519-sha256,")


def live_app(root: Path, client: Client, addr: str) -> Path:
    """A Kamal project for one loopback host, committed to git as kamal requires."""
    host_project(root, client, [addr], extra_ssh="  forward_agent: false\n")
    deploy = root / "config" / "deploy.yml"
    deploy.write_text(deploy.read_text() + "registry:\n  username: acme\n  password:\n"
                      "    - KAMAL_REGISTRY_PASSWORD\nbuilder:\n  arch: amd64\n")
    (root / ".kamal" / "secrets").write_text(
        "KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD\n")
    return commit_all(root)


def start(lab: Lab, client: Client, tmp_path: Path, hardened: bool = True) -> tuple[Host, Path]:
    """One loopback host (hardened for Kamal, or with the cloud-init trap), pinned, and an app."""
    addr = next_addr()
    host = lab.start(addr, KAMAL_HARDENED, files=None if hardened else TRAP,
                     authorized={DEPLOY_USER: client.public})
    client.trust(host.known_line())
    return host, live_app(tmp_path / "app", client, addr)


def live_env(real_kamal: Path, client: Client) -> dict[str, str]:
    # the deploy key is the only key (no agent); critical: the test hosts' other settings are
    # not what this test is about
    return env_for(real_kamal, HOME=str(client.home), KAMAL_SECURE_FAIL_ON="critical")
