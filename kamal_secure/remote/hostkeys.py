"""Strict host key verification: known keys only, for every address and port.

Keys come from ``~/.ssh/known_hosts``, ``/etc/ssh/ssh_known_hosts`` and the
project's pinned ``.kamal/known_hosts``. A host on a port other than 22 is
looked up as ``[host]:port`` (no exception for 127.0.0.1). Unknown and changed
keys raise; nothing is ever added to a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from kamal_secure.errors import CheckIncomplete, ConfigError
from kamal_secure.facts.host import HostKey, Unchecked

PINNED = Path(".kamal/known_hosts")
SYSTEM = Path("/etc/ssh/ssh_known_hosts")
RSA_TYPES = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


class HostKeyProblem(CheckIncomplete):
    reason: Unchecked = "host_key_unknown"


class HostKeyUnknown(HostKeyProblem):
    reason: Unchecked = "host_key_unknown"


class HostKeyChanged(HostKeyProblem):
    reason: Unchecked = "host_key_changed"


def known_hosts_files(root: Path) -> list[Path]:
    return [Path.home() / ".ssh" / "known_hosts", SYSTEM, root / PINNED]


@dataclass
class KnownHosts:
    keys: paramiko.HostKeys = field(default_factory=paramiko.HostKeys)
    revoked: set[str] = field(default_factory=set)  # base64 blobs of @revoked keys

    def lookup(self, name: str) -> Any:
        return self.keys.lookup(name)


def load_known_hosts(files: list[Path]) -> KnownHosts:
    """Plain and hashed entries; ``@revoked`` honoured; ``@cert-authority`` lines skipped (a
    host only they would vouch for stays unknown: fail closed). A file that is not text is a
    configuration error (exit 2); so is any line of the project's pinned ``.kamal/known_hosts``
    (which pin-hosts writes) that is not a known_hosts entry. In the user's and the system's
    files a malformed line is skipped, as OpenSSH does."""
    known = KnownHosts()
    for path in files:
        try:
            raw = path.read_bytes() if path.is_file() else b""
        except OSError as err:
            raise CheckIncomplete(f"cannot read known hosts file {path}: {err}") from None
        text = _text(raw, path)
        strict = path.parts[-2:] == PINNED.parts
        for number, line in enumerate(text.splitlines(), 1):
            why = _add_line(known, line.strip())
            if why and strict:
                raise ConfigError(f"{path}:{number}: not a known_hosts entry ({why})",
                                  hint="run `kamal-secure pin-hosts` to write it again")
    return known


def _text(raw: bytes, path: Path) -> str:
    if b"\x00" in raw:
        raise ConfigError(f"{path}: binary data (NUL byte), not a known_hosts file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8, not a known_hosts file") from None


def _add_line(known: KnownHosts, line: str) -> str | None:
    """Add one line; the reason when it is not a usable entry (None for comments too)."""
    if not line or line.startswith("#"):
        return None
    if line.startswith("@"):
        marker, _, rest = line.partition(" ")
        fields = rest.split()
        if marker == "@revoked" and len(fields) >= 3:
            known.revoked.add(fields[2])
            return None
        if marker == "@cert-authority" and len(fields) >= 3:
            return None
        return f"unknown marker or missing fields after {marker[:20]!r}"
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
    except Exception as err:  # paramiko raises several unrelated types for a bad line
        return f"the key does not decode: {type(err).__name__}"
    if entry is None or entry.key is None:
        return "expected: host-names key-type base64-key, with a key type paramiko knows"
    for name in entry.hostnames:
        known.keys.add(name, entry.key.get_name(), entry.key)
    return None


def key_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def known_for(keys: KnownHosts, names: list[str]) -> dict[str, paramiko.PKey]:
    found: dict[str, paramiko.PKey] = {}
    for name in names:
        entry = keys.lookup(name)
        if entry is not None:
            for key_type in entry:
                found.setdefault(key_type, entry[key_type])
    return found


def prefer_known_types(transport: paramiko.Transport, known: dict[str, paramiko.PKey]) -> None:
    """Ask for a host key type we can verify (what OpenSSH does with known_hosts)."""
    if not known:
        return
    wanted: list[str] = []
    for key_type in known:
        wanted.extend(RSA_TYPES if key_type == "ssh-rsa" else (key_type,))
    prefer_types(transport, wanted)


def prefer_types(transport: paramiko.Transport, wanted: Sequence[str]) -> None:
    """Ask for these host key types first, in this order; the others after them."""
    options = transport.get_security_options()
    available = list(options.key_types)
    first = [t for t in wanted if t in available]
    options.key_types = first + [t for t in available if t not in first]


def fingerprint(key: paramiko.PKey) -> str:
    return str(key.fingerprint)


def host_key(key: paramiko.PKey) -> HostKey:
    """A host's key as plain data (type, size, fingerprint, the key itself)."""
    return HostKey(key.get_name(), key.get_bits(), fingerprint(key), key.get_base64())


def verify(known: dict[str, paramiko.PKey], names: list[str], key: paramiko.PKey,
           revoked: set[str] | None = None) -> None:
    name = names[0]
    if key.get_base64() in (revoked or set()):
        raise HostKeyChanged(f"{name} presents a REVOKED host key ({key.get_name()} "
                             f"{fingerprint(key)}, marked @revoked in known_hosts); "
                             "refusing to continue")
    if not known:
        raise HostKeyUnknown(
            f"unknown host key for {name}: {key.get_name()} {fingerprint(key)}",
            hint=f"check the fingerprint on the host itself (ssh-keygen -lf "
            f"/etc/ssh/ssh_host_*_key.pub), then pin it: echo '{name} {key.get_name()} "
            f"{key.get_base64()}' >> {PINNED}",
        )
    expected = known.get(key.get_name())
    if expected is None or expected.asbytes() != key.asbytes():
        old = expected if expected is not None else next(iter(known.values()))
        raise HostKeyChanged(
            f"HOST KEY CHANGED for {name}: known {old.get_name()} {fingerprint(old)}, "
            f"host now presents {key.get_name()} {fingerprint(key)}. Someone may be in the "
            "middle; refusing to continue",
            hint="if the host was rebuilt on purpose, verify the new fingerprint on its "
            "console and replace its line in known_hosts",
        )
