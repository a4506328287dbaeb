"""Collect a host's public host key without logging in (what ssh-keyscan does)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import paramiko

from kamal_secure.remote.session import Unreachable

PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")


@dataclass(frozen=True)
class HostKey:
    key_type: str  # "ssh-ed25519", ...
    base64: str
    fingerprint: str  # SHA256:..., as ssh-keygen -lf prints it


def fetch(host: str, port: int, timeout: float, sock: Any = None) -> HostKey:
    """The key ``host`` presents; ``sock``: a channel through a jump host or a proxy command."""
    if sock is None:
        try:
            sock = socket.create_connection((host, port), timeout)
        except OSError as err:
            raise Unreachable(f"cannot connect to {host}:{port}: "
                              f"{err.strerror or type(err).__name__}") from None
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        available = list(options.key_types)
        first = [t for t in PREFERRED if t in available]
        options.key_types = first + [t for t in available if t not in first]
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise Unreachable(f"{host}:{port}: no SSH handshake ({err or type(err).__name__})"
                          ) from None
    finally:
        transport.close()
    return HostKey(key.get_name(), key.get_base64(), str(key.fingerprint))


def fetch_for(conn: Any, target: Any) -> tuple[str, HostKey]:
    """(known_hosts name, key) for a target, reached the way Kamal reaches it: directly,
    through ``ssh.proxy`` (the jump host's own key verified strictly) or ``proxy_command``."""
    from kamal_secure.remote import hostkeys, session
    from kamal_secure.remote.ssh_config import resolve

    hostname, port = resolve(target.name, conn.ssh)
    name = hostkeys.key_name(hostname, port)
    if conn.ssh.proxy is None and not conn.ssh.proxy_command:
        return name, fetch(hostname, port, conn.timeout)
    jump = conn.jump(conn.ssh.proxy) if conn.ssh.proxy is not None else None
    try:
        sock = conn.open_socket(session.Endpoint(hostname, port, conn.ssh.user), jump)
        return name, fetch(hostname, port, conn.timeout, sock)
    finally:
        if jump is not None:
            jump.close()
