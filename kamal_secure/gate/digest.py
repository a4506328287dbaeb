"""A digest of what the wrapper's gate checked, so Kamal's hooks need not check the hosts again.

The wrapper sets KAMAL_SECURE_GATE_DIGEST and KAMAL_SECURE_GATE_HOSTS before it execs kamal;
a hook skips the live host checks only when the digest, recomputed over the same config,
destination file, policy, known_hosts files and host list, matches and Kamal's KAMAL_HOSTS
are among the hosts checked. Anything different means: check again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kamal_secure.config.load import destination_file
from kamal_secure.errors import UsageError

DIGEST_ENV = "KAMAL_SECURE_GATE_DIGEST"
HOSTS_ENV = "KAMAL_SECURE_GATE_HOSTS"


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"<absent>"


def gate_digest(config_file: str, destination: str | None, hosts: list[str]) -> str:
    config = Path(config_file).expanduser().resolve()
    parts = [b"kamal-secure-gate-v1", str(config).encode(), _bytes(config),
             (destination or "").encode()]
    if destination:
        parts.append(_bytes(destination_file(config, destination)))
    for extra in (Path(".kamal/secure.yml"), Path(".kamal/known_hosts"),
                  Path.home() / ".ssh" / "known_hosts", Path("/etc/ssh/ssh_known_hosts")):
        parts.append(_bytes(extra))
    parts.append("\n".join(sorted(set(hosts))).encode())
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def already_checked(environ: dict[str, str], config_file: str, destination: str | None,
                    kamal_hosts: list[str]) -> bool:
    given = environ.get(DIGEST_ENV)
    if given and not _is_digest(given):
        raise UsageError(f"{DIGEST_ENV}: not a kamal-secure gate digest (64 hex digits); it "
                         "is set only by the kamal-secure wrapper")
    checked = [h for h in environ.get(HOSTS_ENV, "").split(",") if h]
    if not given or not checked or not kamal_hosts:
        return False
    if not set(kamal_hosts) <= set(checked):
        return False
    return given == gate_digest(config_file, destination, checked)


def _is_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
