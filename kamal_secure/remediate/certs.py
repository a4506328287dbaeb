"""Short-lived SSH user certificates for the deploy key, signed by the kamal-secure CA.

``mint`` builds one certificate with cryptography's ``SSHCertificateBuilder``: a user
certificate for one principal (``ssh.user``), valid from a minute in the past (clock skew)
to ``validity`` minutes ahead, with no extension but ``permit-pty`` when the command
needs a terminal (so no port, agent or X11 forwarding and no ``~/.ssh/rc``), an optional
``source-address`` critical option, a key id naming who, which commit and which command
(sshd logs it on every login), and a serial that grows.

The serial is the signing time in milliseconds since the epoch. A counter stored beside
the CA would reset on every CI runner (where the CA comes from a secret in the
environment and there is no file to keep it beside) and would race between two runners;
the clock grows on every machine that keeps time, needs no state, and one deploy does
not mint twice in a millisecond. sshd uses the serial only to revoke (``RevokedKeys``);
the key id carries what a log reader needs.

The CA key comes from a file (its passphrase, if any, from an environment variable) or
from an environment variable holding the OpenSSH private key text itself (a CI secret):
that variable is removed from the environment as soon as it is read, so neither Kamal
nor anything else started later inherits it, and the key object is dropped after
signing. (Python cannot zero an immutable string; the text lives until it is collected.)
Signing with an ssh-agent is not here yet.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.errors import UsageError
from kamal_secure.fileio import write_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.serialization import SSHCertificate
    from cryptography.hazmat.primitives.serialization.ssh import (
        SSHCertPrivateKeyTypes,
        SSHCertPublicKeyTypes,
    )

MARKER = "kamal-secure:"  # every key id we write starts with it; nothing else is overwritten
SKEW = dt.timedelta(seconds=60)
MAX_KEY_ID = 200


@dataclass(frozen=True)
class CaSource:
    """Where the CA private key is: exactly one of ``path`` and ``env``."""

    path: Path | None = None
    env: str | None = None  # the name of a variable holding the private key text
    passphrase: bytes | None = None  # for an encrypted key (from the environment, never argv)

    def describe(self) -> str:
        return f"the CA key in ${self.env}" if self.env else f"the CA key {self.path}"


def _private_bytes(source: CaSource) -> bytes:
    if (source.path is None) == (source.env is None):
        raise UsageError("the CA key: give exactly one of a file and an environment variable")
    if source.env is not None:
        value = os.environ.pop(source.env, None)  # read once; nothing started later sees it
        if not value:
            raise UsageError(f"--ca-env {source.env}: the variable is not set or empty")
        return value.encode()
    assert source.path is not None
    path = source.path.expanduser()
    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"the CA key {path}: {err.strerror or err}") from None


def _load_ca(source: CaSource) -> SSHCertPrivateKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    data = _private_bytes(source)
    try:
        key = load_ssh_private_key(data, source.passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        reason = ("it is encrypted: give its passphrase through the environment"
                  if "password" in str(err).lower() and source.passphrase is None
                  else "not an OpenSSH private key, or the passphrase is wrong")
        raise UsageError(f"{source.describe()}: {reason}") from None
    finally:
        del data
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
                      | rsa.RSAPrivateKey):
        raise UsageError(f"{source.describe()}: a {type(key).__name__} cannot sign "
                         "certificates (use ed25519: kamal-secure ca init)")
    return key


def _load_public(line: str) -> SSHCertPublicKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        key = load_ssh_public_key(line.strip().encode())
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm):
        raise UsageError("the deploy key's .pub is not an OpenSSH public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
                      | rsa.RSAPublicKey):
        raise UsageError(f"the deploy key is a {type(key).__name__}: it cannot be certified")
    return key


def key_id(who: str, commit: str, command: str) -> str:
    """The key id sshd logs for every login with the certificate: printable, one line."""
    text = f"{MARKER}{who}@{commit[:12] or 'nocommit'}:{command}"
    safe = "".join(ch if ch.isprintable() and ch not in "\r\n\t" else "?" for ch in text)
    return safe[:MAX_KEY_ID]


def serial_now(now: dt.datetime | None = None) -> int:
    """The serial: milliseconds since the epoch (see the module docstring for why)."""
    return int((now or dt.datetime.now(dt.UTC)).timestamp() * 1000)


def mint(ca: CaSource, deploy_key_pub: str, principal: str, validity: int, key_id: str,
         serial: int, source_address: tuple[str, ...] | None = None, pty: bool = False,
         now: dt.datetime | None = None) -> bytes:
    """One user certificate for ``deploy_key_pub`` (a ``.pub`` line), as a ``-cert.pub``
    line. ``validity`` is in minutes."""
    from cryptography.hazmat.primitives.serialization import (
        SSHCertificateBuilder,
        SSHCertificateType,
    )

    if validity < 1:
        raise UsageError(f"certificate validity {validity} minutes: must be at least 1")
    if not key_id.startswith(MARKER):
        raise UsageError(f"key id {key_id!r} does not start with {MARKER!r}")
    public = _load_public(deploy_key_pub)
    start = now or dt.datetime.now(dt.UTC)
    builder = (SSHCertificateBuilder()
               .public_key(public)
               .type(SSHCertificateType.USER)
               .valid_principals([principal.encode()])
               .valid_after(int((start - SKEW).timestamp()))
               .valid_before(int((start + dt.timedelta(minutes=validity)).timestamp()))
               .key_id(key_id.encode())
               .serial(serial))
    if source_address:
        builder = builder.add_critical_option(b"source-address",
                                              ",".join(source_address).encode())
    if pty:
        builder = builder.add_extension(b"permit-pty", b"")
    private = _load_ca(ca)
    try:
        cert = builder.sign(private)
    finally:
        del private
    return cert.public_bytes() + b"\n"


def parse(data: bytes) -> SSHCertificate:
    """A ``-cert.pub`` line as cryptography reads it; ValueError when it is no certificate."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import (
        SSHCertificate,
        load_ssh_public_identity,
    )

    try:
        loaded = load_ssh_public_identity(data.strip())
    except UnsupportedAlgorithm as err:
        raise ValueError(str(err)) from None
    if not isinstance(loaded, SSHCertificate):
        raise ValueError("a public key, not a certificate")
    return loaded


def ensure_lasts(cert: bytes, minimum: int, now: dt.datetime | None = None) -> None:
    """Refuse a certificate that expires less than ``minimum`` minutes from now: a deploy
    must not lose its access half way."""
    try:
        valid_before = parse(cert).valid_before
    except ValueError:
        raise UsageError("the deploy certificate cannot be read") from None
    left = valid_before - (now or dt.datetime.now(dt.UTC)).timestamp()
    if left < minimum * 60:
        raise UsageError(
            f"the deploy certificate expires in {max(0, int(left // 60))} minutes, less than "
            f"the policy's minimum of {minimum} (certificates.minimum)",
            hint="raise certificates.validity, or lower certificates.minimum")


def cert_path(key_path: Path) -> Path:
    """Where ssh looks for the certificate of ``key_path``: ``KEY-cert.pub``."""
    return key_path.with_name(key_path.name + "-cert.pub")


def write_cert(key_path: Path, cert: bytes) -> Path:
    """Write ``KEY-cert.pub`` whole; refuse to replace a certificate we did not write (one
    whose key id does not carry our marker, or a file that is no certificate)."""
    path = cert_path(key_path.expanduser())
    if path.exists() or path.is_symlink():
        try:
            old = parse(path.read_bytes()).key_id.decode("utf-8", "replace")
        except (OSError, ValueError):
            old = None
        if old is None or not old.startswith(MARKER):
            raise UsageError(
                f"{path} exists and was not written by kamal-secure; refusing to replace it",
                hint="move it away, or give the deploy key its own path (kamal-secure keygen)")
    write_atomic(path, cert, 0o644)
    return path
