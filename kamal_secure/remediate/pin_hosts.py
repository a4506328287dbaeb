"""Pin every host's key so that Kamal itself refuses unknown or changed host keys.

Kamal trusts host keys on first use. This writes the keys, unhashed (sshkit mis-reads
hashed entries, kamal#1814), to ``.kamal/known_hosts``, an ssh config with
``StrictHostKeyChecking yes`` pointing at it, and ``ssh.config`` in deploy.yml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kamal_secure.errors import ConfigError
from kamal_secure.fileio import write_atomic

KNOWN_HOSTS = Path(".kamal/known_hosts")
SSH_CONFIG = Path(".kamal/ssh_config")
SSH_CONFIG_TEXT = f"""\
# Written by `kamal-secure pin-hosts`: Kamal (net-ssh) reads this through ssh.config
# in deploy.yml and then refuses any host whose key is not in {KNOWN_HOSTS}.
Host *
  StrictHostKeyChecking yes
  UserKnownHostsFile {KNOWN_HOSTS}
  GlobalKnownHostsFile /dev/null
"""


@dataclass(frozen=True)
class Seen:
    name: str  # known_hosts name: host or [host]:port
    key_type: str
    base64: str
    fingerprint: str

    def line(self) -> str:
        return f"{self.name} {self.key_type} {self.base64}\n"


@dataclass(frozen=True)
class Plan:
    lines: dict[str, str]  # name -> known_hosts line, for the new file
    added: list[Seen]
    unchanged: list[Seen]
    changed: list[tuple[Seen, str]]  # (what the host shows now, the pinned line)
    unexpected: list[Seen]  # not among --expect fingerprints


def read_pinned(root: Path) -> dict[str, str]:
    path = root / KNOWN_HOSTS
    if not path.exists():
        return {}
    pinned: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith("|"):
            raise ConfigError(f"{KNOWN_HOSTS}:{number}: not a plain `host type key` line")
        for name in parts[0].split(","):
            pinned[name] = f"{name} {parts[1]} {parts[2]}\n"
    return pinned


def plan(seen: list[Seen], pinned: dict[str, str], expect: set[str],
         replace: set[str]) -> Plan:
    lines = dict(pinned)
    added, unchanged, changed, unexpected = [], [], [], []
    for host in seen:
        if expect and host.fingerprint not in expect:
            unexpected.append(host)
            continue
        old = pinned.get(host.name)
        if old is None:
            added.append(host)
        elif old.split()[1:3] == [host.key_type, host.base64]:
            unchanged.append(host)
            continue
        elif host.name.strip("[]").split("]:")[0] not in replace:
            changed.append((host, old))
            continue
        lines[host.name] = host.line()
    return Plan(lines, added, unchanged, changed, unexpected)


def write(root: Path, result: Plan) -> None:
    header = "# Pinned by `kamal-secure pin-hosts` (unhashed: sshkit cannot read hashed lines)\n"
    write_atomic(root / KNOWN_HOSTS, header + "".join(sorted(result.lines.values())), 0o644)
    if not (root / SSH_CONFIG).exists() or (root / SSH_CONFIG).read_text() != SSH_CONFIG_TEXT:
        write_atomic(root / SSH_CONFIG, SSH_CONFIG_TEXT, 0o644)
