"""Shared by the `harden` tests: a host the deploy key logs in to, running harden, the host's
live probe, the switch's rollback."""

from __future__ import annotations

import os
import pwd
import socket
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

from kamal_secure.remote.probe import probe_methods
from testing.cli import Result, run_cli
from testing.live import USER_FILE, keys_file, logs_in
from testing.sshd import DEPLOY_USER, Client, Host, Lab, next_addr, wait_sessions_done

SUDO = f"{DEPLOY_USER} ALL=(root) NOPASSWD: ALL\n"
TRAP = {"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
DROPIN = "sshd_config.d/00-kamal-secure.conf"
STATE = "kamal-secure-rollback"  # the dead man's switch's state, in the host's /etc/ssh
KEPT = "# a line the owner keeps\n"


def key_host(lab: Lab, client: Client, config: str = "", old: bool = False) -> Host:
    """A cloud-init trap host whose deploy user logs in with the deploy key from its own
    ~/.ssh/authorized_keys. ``old``: it runs OpenSSH 8.4 (the ``old_sshd`` fixture)."""
    host = lab.start(next_addr(), config + USER_FILE, files=TRAP, sudoers=SUDO, own_home=True,
                     old=old)
    client.trust(host.known_line())
    entry = pwd.getpwnam(DEPLOY_USER)
    keys_file(host).write_text(KEPT + client.public + "\n")
    keys_file(host).chmod(0o600)
    os.chown(keys_file(host), entry.pw_uid, entry.pw_gid)
    assert logs_in(client.key, host, client)
    return host


def harden(app: Path, client: Client, *args: str, crash: str | None = None,
           drop: str | None = None) -> Result:
    env = {"HOME": str(client.home)}
    if crash:
        env["KAMAL_SECURE_TEST_CRASH_AFTER"] = crash
    if drop:
        env["KAMAL_SECURE_TEST_DROP_STDIN"] = drop
    return run_cli(["harden", *args], app, env)


def offered(host: Host) -> tuple[str, ...] | None:
    """The live probe of the running sshd (the methods it offers the deploy user)."""
    try:
        sock = socket.create_connection((host.addr, host.port), 10)
    except OSError:
        return None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        return probe_methods(transport, DEPLOY_USER)
    except (paramiko.SSHException, OSError, EOFError):
        return None
    finally:
        transport.close()


def eventually(check: Callable[[], bool], bound: float = 90) -> bool:
    """Poll ``check`` up to a generous bound: a wait, not a timing assertion."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def assert_back_to_previous(host: Host, client: Client) -> None:
    """The switch has fired: the previous files, sshd running them, no timer left."""
    assert eventually(lambda: not (host.etc / STATE).exists()), "the rollback never ran"
    wait_sessions_done(host)  # nothing of ours (no timer) is left running on the host
    assert not (host.etc / DROPIN).exists()
    assert eventually(lambda: "password" in (offered(host) or ())), offered(host)
    assert logs_in(client.key, host, client)
