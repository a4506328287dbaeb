"""Acting on hosts (not just reading them): sessions with chosen login keys, fixed scripts.

Every script is a constant; values reach it only as positional arguments
(``sh -c SCRIPT sh ARG...``, each quoted by Session.run) or on stdin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import paramiko

from kamal_secure.config.inventory import Inventory, Target
from kamal_secure.errors import CheckIncomplete, UsageError
from kamal_secure.remote import hostkeys, session
from kamal_secure.remote.ssh_config import resolve


def key_from_file(path: Path) -> list[paramiko.PKey]:
    """A private key file (or, when encrypted, the agent's copy of it)."""
    return session.key_file(path.expanduser(), session.agent_keys())


def connector(inventory: Inventory, root: Path, keys: list[paramiko.PKey],
              timeout: float = 20.0) -> session.Connector:
    known = hostkeys.load_known_hosts(hostkeys.known_hosts_files(root))
    # fix commands act on the user's own project: ssh.proxy_command is how Kamal gets there
    return session.Connector(inventory.ssh, known, keys, timeout, allow_proxy_command=True)


def only_key(inventory: Inventory, root: Path, path: Path,
             timeout: float = 20.0) -> session.Connector:
    """A connector that logs in with this one key and nothing else (keys_only)."""
    keys = key_from_file(path)
    if not keys:
        raise UsageError(f"cannot load the private key {path}")
    ssh = replace(inventory.ssh, keys=(str(path),), keys_only=True)
    return session.Connector(ssh, hostkeys.load_known_hosts(hostkeys.known_hosts_files(root)),
                             keys, timeout, allow_proxy_command=True)


def open_target(conn: session.Connector, target: Target) -> session.Session:
    if target.dynamic:
        raise CheckIncomplete(f"{target.label}: the host name comes from ERB")
    hostname, port = resolve(target.name, conn.ssh)
    names = [hostkeys.key_name(hostname, port)]
    if target.name != hostname:
        names.append(hostkeys.key_name(target.name, port))
    return conn.open(session.Endpoint(hostname, port, conn.ssh.user), names)


def script(sess: session.Session, text: str, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    return sess.run(["sh", "-c", text, "sh", *args], stdin)


def can_login(conn: session.Connector, target: Target) -> tuple[bool, str]:
    try:
        open_target(conn, target).close()
    except CheckIncomplete as err:
        return False, err.message
    return True, ""


def on_host(conn: session.Connector, target: Target, no_login: str,
            body: Callable[[session.Session], tuple[bool, str]]) -> tuple[bool, str]:
    """Log in, run ``body`` with the open session, close it; every failure becomes a
    per-host (False, message) so one host never stops the others."""
    try:
        sess = open_target(conn, target)
    except CheckIncomplete as err:
        return False, f"{no_login}: {err.message}"
    try:
        return body(sess)
    except CheckIncomplete as err:
        return False, err.message
    except Exception as err:  # one host's failure is reported, not raised
        return False, f"{type(err).__name__}: {err}"
    finally:
        sess.close()
