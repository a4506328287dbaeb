"""Collect a host's public host key without logging in (what ssh-keyscan does)."""

from __future__ import annotations

from typing import Any

import paramiko

from kamal_secure.facts.host import HostKey
from kamal_secure.remote import hostkeys, session

PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")


def fetch(sock: Any, endpoint: session.Endpoint, timeout: float) -> HostKey:
    """The key the host at the other end of ``sock`` presents (nothing verified: this is
    the key that is about to be shown to the user and pinned)."""
    transport = paramiko.Transport(sock)
    try:
        hostkeys.prefer_types(transport, PREFERRED)
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise session.Unreachable(f"{endpoint.hostname}:{endpoint.port}: no SSH handshake "
                                  f"({err or type(err).__name__})") from None
    finally:
        transport.close()
    return hostkeys.host_key(key)


def fetch_for(conn: session.Connector, name: str) -> tuple[str, HostKey]:
    """(known_hosts name, key) for the deploy.yml host ``name``, reached the way Kamal
    reaches it (:meth:`session.Connector.reach`: the jump host's own key verified)."""
    endpoint, names = session.endpoint_for(name, conn.ssh)
    sock, jump = conn.reach(endpoint)
    try:
        return names[0], fetch(sock, endpoint, conn.timeout)
    finally:
        if jump is not None:
            jump.close()
