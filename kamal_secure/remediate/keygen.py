"""Create a dedicated ed25519 deploy key, atomically: each file old or new, never half.

The .pub is written first and the private key last (the commit point): a run cut short
between the two leaves the old private key, whole, and a .pub ssh ignores without it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from kamal_secure.errors import UsageError
from kamal_secure.facts.keys import parse_public
from kamal_secure.fileio import write_atomic

DEFAULT_PATH = "~/.ssh/kamal_deploy_key"


@dataclass(frozen=True)
class NewKey:
    path: Path
    fingerprint: str
    comment: str
    backups: tuple[Path, ...]


def passphrase_from_env(var: str | None) -> bytes | None:
    """The passphrase in the environment variable ``var`` (``--passphrase-from-env VAR``):
    a passphrase never comes from argv, where every local user can read it."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise UsageError(f"--passphrase-from-env {var}: the variable is not set or empty")
    return value.encode()


def comment_for(service: str, today: dt.date | None = None) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in service) or "app"
    return f"kamal-deploy:{safe}:{(today or dt.date.today()).isoformat()}"


def _key_material(comment: str, passphrase: bytes | None) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                encryption)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return private, public + f" {comment}\n".encode()


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077 and directory.name == ".ssh":
        directory.chmod(0o700)


def _backup(path: Path, stamp: str) -> list[Path]:
    """Hard-link the old pair to timestamped names: the old files stay in place until replaced."""
    made = []
    for old in (path, path.with_name(path.name + ".pub")):
        if old.exists():
            backup = old.with_name(f"{old.name}.bak-{stamp}")
            os.link(old, backup)
            made.append(backup)
    return made


def _sibling(path: Path, comment: str) -> str:
    """A name beside ``path`` for this app's own key, shown with ``~`` when under home."""
    service = comment.split(":")[1] if comment.count(":") >= 2 else "app"
    candidate = path.with_name(f"{path.name}_{service}")
    home = Path.home()
    try:
        return "~/" + str(candidate.relative_to(home))
    except ValueError:
        return str(candidate)


def create(path: Path, comment: str, passphrase: bytes | None = None,
           force: bool = False) -> NewKey:
    path = path.expanduser()
    pub_path = path.with_name(path.name + ".pub")
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(
            f"{path} exists already; refusing to overwrite a key (another app or environment "
            "may use it)",
            hint=f"give this app its own key: --path {_sibling(path, comment)} (one key per app or "
            "environment); --force replaces the existing key for everyone that uses it")
    if path.is_dir():
        raise UsageError(f"{path} is a directory")
    _prepare_dir(path.parent)
    private, public = _key_material(comment, passphrase)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    backups = _backup(path, stamp) if force else []
    write_atomic(pub_path, public, 0o644)
    write_atomic(path, private, 0o600)  # the commit point: the private key appears whole
    info, _ = parse_public(public.decode())
    return NewKey(path, info.fingerprint, comment, tuple(backups))

