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
signing (Python cannot zero an immutable string; the text lives until it is collected),
or from an ssh-agent holding it (``ssh-add``), named by the CA's public key: the private
key never touches this machine's disk nor this process. The builder needs a private key,
so the agent path lets it encode every field, signed by a throwaway key, then puts the
CA's public key in place of the throwaway one, has the agent sign that body, and checks
the signature with cryptography before the certificate is used.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.errors import InternalError, UsageError
from kamal_secure.fileio import write_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.serialization import (
        SSHCertificate,
        SSHCertificateBuilder,
    )
    from cryptography.hazmat.primitives.serialization.ssh import (
        SSHCertPrivateKeyTypes,
        SSHCertPublicKeyTypes,
    )

MARKER = "kamal-secure:"  # every key id we write starts with it; nothing else is overwritten
SKEW = dt.timedelta(seconds=60)
MAX_KEY_ID = 200


@dataclass(frozen=True)
class CaSource:
    """Where the CA private key is: exactly one of ``path``, ``env`` and ``agent``."""

    path: Path | None = None
    env: str | None = None  # the name of a variable holding the private key text
    agent: Path | None = None  # the CA's .pub: its private key is in the ssh-agent
    # for an encrypted key (from the environment, never argv; never shown by repr)
    passphrase: bytes | None = field(default=None, repr=False)
    # the key text ``env`` held, once taken from the environment (never shown by repr)
    secret: bytes | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.agent is not None:
            return f"the CA key {self.agent} in the ssh-agent"
        return f"the CA key in ${self.env}" if self.env else f"the CA key {self.path}"


def _private_bytes(source: CaSource) -> bytes:
    if source.env is not None:
        from kamal_secure.gate.kamal import take_secret

        # read once; nothing started later sees it
        value = source.secret if source.secret is not None else take_secret(source.env)
        if not value:
            raise UsageError(f"the CA variable ${source.env} is not set or empty")
        return value
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
    if [ca.path, ca.env, ca.agent].count(None) != 2:
        raise UsageError("the CA key: give exactly one of a file, an environment variable "
                         "and an ssh-agent key")
    if ca.agent is not None:
        return _sign_with_agent(builder, ca.agent) + b"\n"
    private = _load_ca(ca)
    try:
        cert = builder.sign(private)
    finally:
        del private
    return cert.public_bytes() + b"\n"


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


ED25519_SIGNATURE = len(_ssh_string(_ssh_string(b"ssh-ed25519") + _ssh_string(bytes(64))))


def _sign_with_agent(builder: SSHCertificateBuilder, ca_pub: Path) -> bytes:
    """The certificate ``builder`` describes, signed by the agent's key ``ca_pub``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from kamal_secure.remote.session import agent_keys

    try:
        wanted = base64.b64decode(ca_pub.expanduser().read_text().split()[1], validate=True)
    except (OSError, ValueError, IndexError):
        raise UsageError(f"{ca_pub}: not a readable OpenSSH public key") from None
    key = next((k for k in agent_keys() if k.asbytes() == wanted), None)
    if key is None:
        raise UsageError(f"the CA key {ca_pub} is not in the ssh-agent (SSH_AUTH_SOCK)",
                         hint="ssh-add the CA's private key, or give the CA as a file")
    placeholder = Ed25519PrivateKey.generate()
    draft_line = builder.sign(placeholder).public_bytes().split()
    draft = base64.b64decode(draft_line[1])
    signer = _ssh_string(base64.b64decode(placeholder.public_key().public_bytes(
        Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1]))
    tail = len(signer) + ED25519_SIGNATURE
    if draft[-tail:-ED25519_SIGNATURE] != signer:
        raise InternalError("the certificate builder's layout is not the one expected")
    body = draft[:-tail] + _ssh_string(wanted)
    algorithm = "rsa-sha2-512" if key.get_name() == "ssh-rsa" else None
    signature = key.sign_ssh_data(body, algorithm)
    raw = signature.asbytes() if hasattr(signature, "asbytes") else bytes(signature)
    line = draft_line[0] + b" " + base64.b64encode(body + _ssh_string(raw))
    try:
        parse(line).verify_cert_signature()
    except (ValueError, InvalidSignature):
        raise UsageError(f"the ssh-agent's signature with {ca_pub} does not verify") from None
    return line


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


def signer(cert: bytes) -> str:
    """The public key of the CA that signed ``cert``, ``TYPE BASE64`` (as the hosts'
    TrustedUserCAKeys file holds it); ValueError when it is no certificate."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = parse(cert).signature_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return " ".join(key.decode().split()[:2])


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
