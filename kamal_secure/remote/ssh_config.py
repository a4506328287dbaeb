"""``ssh.config`` / ``~/.ssh/config``: the HostName Kamal connects to.

Kamal (net-ssh) reads these files unless ``ssh.config: false``, but passes its
own ``user`` and ``port`` (``ssh.port``, default 22) explicitly, so ``User`` and
``Port`` there never apply; ``HostName`` does.
"""

from __future__ import annotations

from pathlib import Path

import paramiko

from kamal_secure.config.inventory import SshSettings


def resolve(name: str, ssh: SshSettings) -> tuple[str, int]:
    for raw in ssh.config_files:
        path = Path(raw).expanduser()
        if not path.is_file():
            continue
        try:
            found = paramiko.SSHConfig.from_path(str(path)).lookup(name)
        except (OSError, paramiko.SSHException, ValueError, KeyError):
            continue
        hostname = found.get("hostname")
        if hostname and hostname != name:
            return str(hostname), ssh.port
    return name, ssh.port
