"""What one host told us, as plain frozen data. Host rules read this; no I/O, no paramiko."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

# Where the effective configuration came from. Only DERIVED was not printed by sshd itself.
SOURCE_ROOT = "sshd -T (as root)"
SOURCE_SUDO = "sshd -T (sudo -n)"
SOURCE_HOSTKEY = "sshd -T -h (throwaway host key, as the deploy user)"
SOURCE_DERIVED = "derived, not read: sshd -T could not run; the files were parsed"

# Why a host could not be checked. The SSH layer says which; rules/host_access.py maps each
# to its rule (KS801-KS804), so the SSH layer knows no rule ids.
Unchecked = Literal["unreachable", "host_key_unknown", "host_key_changed", "login_failed"]


@dataclass(frozen=True)
class SshdConfig:
    """``sshd -T`` output: lowercase keyword -> every value line, in order."""

    entries: tuple[tuple[str, str], ...] = ()
    source: str = SOURCE_ROOT

    @classmethod
    def parse(cls, text: str, source: str = SOURCE_ROOT) -> SshdConfig:
        pairs = []
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if key and not key.startswith("#"):
                pairs.append((key.lower(), value.strip()))
        return cls(tuple(pairs), source)

    @classmethod
    def of(cls, values: Iterable[tuple[str, str]], source: str) -> SshdConfig:
        return cls(tuple((k.lower(), v) for k, v in values), source)

    def get(self, key: str) -> str | None:
        key = key.lower()
        return next((v for k, v in self.entries if k == key), None)

    def all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self.entries if k == key]

    def flag(self, key: str) -> str | None:
        value = self.get(key)
        return value.lower() if value is not None else None

    def number(self, key: str) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        try:
            return int(value.split()[0])
        except (ValueError, IndexError):
            return None

    @property
    def derived(self) -> bool:
        return self.source == SOURCE_DERIVED


@dataclass(frozen=True)
class AuthorizedKey:
    key_type: str
    fingerprint: str  # SHA256:..., never the key itself
    comment: str
    options: str  # e.g. from="203.0.113.0/24",no-pty
    source_file: str

    @property
    def from_restriction(self) -> str | None:
        for part in split_options(self.options):
            name, _, value = part.partition("=")
            if name.lower() == "from":
                return value.strip('"')
        return None


def split_options(text: str) -> list[str]:
    """authorized_keys options: comma-separated, commas inside double quotes kept."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts


@dataclass(frozen=True)
class HostKey:
    """A host's public key: what the host rules judge and what pin-hosts pins."""

    key_type: str  # ssh-ed25519, ssh-rsa, ...
    bits: int
    fingerprint: str  # SHA256:..., as ssh-keygen -lf prints it
    base64: str = ""  # the key itself, as in a known_hosts line


# What reading a file named by sshd's configuration found: "unreadable" is unknown, never
# "absent" (fail closed).
FileState = Literal["ok", "absent", "unreadable"]


@dataclass(frozen=True)
class HostFile:
    """A file sshd's configuration names (TrustedUserCAKeys, RevokedKeys) and what it holds."""

    path: str
    state: FileState
    keys: tuple[AuthorizedKey, ...] = ()  # the public keys in it (TrustedUserCAKeys)


@dataclass(frozen=True)
class HostFacts:
    name: str  # as in deploy.yml
    address: str  # what we connected to (after ssh config HostName)
    port: int
    user: str  # Kamal's ssh.user
    offered: tuple[str, ...] | None  # auth methods the running daemon offers this user
    sshd: SshdConfig | None  # effective config for this user and our address
    host_key: HostKey | None = None
    authorized_keys: tuple[AuthorizedKey, ...] | None = None  # None: could not read
    deploy_fingerprints: tuple[str, ...] = ()  # fingerprints of ssh.keys
    # the files named by TrustedUserCAKeys and RevokedKeys; None: not set, or sshd unknown
    trusted_ca: HostFile | None = None
    revoked_keys: HostFile | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.name if self.port == 22 else f"{self.name}:{self.port}"
