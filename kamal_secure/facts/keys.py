"""Facts about the deploy key files named in ``ssh.keys``, gathered once; rules read them.

Keys are read with ``cryptography`` (paramiko's own backend), never guessed
from a file name. Private key material never leaves this module: only the
type, size, fingerprint and whether it is encrypted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import stat
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MAX_KEY_BYTES = 64 * 1024
DEFAULT_IDENTITIES = ("id_ed25519", "id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519_sk", "id_dsa")
# the creation date in our comments: deploy keys (keygen) and the CA (ca init)
COMMENT_RE = re.compile(r"(?:kamal-deploy:[^:\s]*|kamal-secure-ca):(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class KeyInfo:
    kind: str  # "ed25519", "rsa", "ecdsa", "dsa", or another ssh key type name
    bits: int
    fingerprint: str  # SHA256:... exactly as ssh-keygen -lf prints it


@dataclass(frozen=True)
class KeyFacts:
    index: int  # position in ssh.keys
    written: str  # as written in deploy.yml
    path: Path  # ~ expanded, relative paths against the working directory (as net-ssh does)
    is_symlink: bool
    target: Path | None  # where a symlink points
    file_type: str  # "file", "missing", "directory", "device", "other"
    readable: bool
    mode: int | None
    owner: int | None
    current_user: int
    loose_dirs: tuple[tuple[str, int], ...]  # parent dirs writable by group or others
    ssh_dir: tuple[str, int] | None  # ~/.ssh and its mode, when the key is under it
    info: KeyInfo | None  # None when the file is not a readable key
    encrypted: bool
    problem: str | None  # why the file could not be read as a key
    pub_present: bool
    pub_info: KeyInfo | None
    pub_problem: str | None
    default_identity: str | None  # ~/.ssh/id_* with the same fingerprint
    created: dt.date | None
    created_source: str  # "key comment", "file mtime" or "unknown"


def fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _blob_info(blob: bytes) -> KeyInfo:
    kind_len = struct.unpack(">I", blob[:4])[0]
    name = blob[4:4 + kind_len].decode("ascii", "replace")
    return KeyInfo(_kind(name), _blob_bits(name, blob), fingerprint(blob))


def _kind(name: str) -> str:
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ssh-dss": "dsa"}.get(
        name, "ecdsa" if name.startswith("ecdsa-") else name)


def _blob_bits(name: str, blob: bytes) -> int:
    if name == "ssh-ed25519":
        return 256
    if name.startswith("ecdsa-sha2-nistp"):
        return int(name.rsplit("nistp", 1)[1])
    fields = _strings(blob)
    if name == "ssh-rsa" and len(fields) >= 3:
        return int.from_bytes(fields[2], "big").bit_length()
    if name == "ssh-dss" and len(fields) >= 2:
        return int.from_bytes(fields[1], "big").bit_length()
    return 0


def _strings(blob: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset + 4 <= len(blob):
        size = struct.unpack(">I", blob[offset:offset + 4])[0]
        out.append(blob[offset + 4:offset + 4 + size])
        offset += 4 + size
    return out


def parse_public(text: str) -> tuple[KeyInfo, str]:
    """A ``.pub`` line: (info, comment). Raises ValueError when it is no public key."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise ValueError("the key data is not base64") from None
    info = _blob_info(blob)
    if not parts[0] or _strings(blob)[0].decode("ascii", "replace") != parts[0]:
        raise ValueError("the key type does not match the key data")
    return info, parts[2] if len(parts) > 2 else ""


def _openssh_public_blob(data: bytes) -> bytes | None:
    """The public key stored in clear inside an (even encrypted) openssh-key-v1 file."""
    text = data.decode("ascii", "replace")
    match = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END OPENSSH PRIVATE KEY-----",
                      text, re.DOTALL)
    if not match:
        return None
    try:
        raw = base64.b64decode("".join(match.group(1).split()))
    except ValueError:
        return None
    magic = b"openssh-key-v1\x00"
    if not raw.startswith(magic):
        return None
    fields = _strings(raw[len(magic):])
    # ciphername, kdfname, kdfoptions, then uint32 nkeys eats 4 bytes of the next "string"
    rest = raw[len(magic):]
    offset = sum(4 + len(f) for f in fields[:3])
    if offset + 8 > len(rest):
        return None
    size = struct.unpack(">I", rest[offset + 4:offset + 8])[0]
    return rest[offset + 8:offset + 8 + size]


def read_private(data: bytes) -> tuple[KeyInfo | None, bool, str | None]:
    """(info, encrypted, problem) for the bytes of a private key file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DSA is deprecated: we report it ourselves
        return _read_private(data)


def _read_private(data: bytes) -> tuple[KeyInfo | None, bool, str | None]:
    from cryptography.hazmat.primitives import serialization

    blob = _openssh_public_blob(data)
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for loader in loaders:
        try:
            key = loader(data, password=None)
        except TypeError:  # encrypted: the public half may still be readable
            return (_blob_info(blob) if blob else None), True, None
        except Exception:  # noqa: S112 - not this format (or an algorithm it cannot read)
            continue
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        return parse_public(public.decode())[0], False, None
    if blob:
        return _blob_info(blob), False, None
    return None, False, "not a private key this tool (or OpenSSH) can read"


def _file_type(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "other"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "device"
    return "other"


def _loose_dirs(path: Path) -> tuple[tuple[str, int], ...]:
    loose = []
    for parent in path.parents:
        try:
            st = parent.stat()
        except OSError:
            continue
        sticky = bool(st.st_mode & stat.S_ISVTX)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            loose.append((str(parent), stat.S_IMODE(st.st_mode)))
    return tuple(loose)


def _ssh_dir(path: Path, home: Path) -> tuple[str, int] | None:
    ssh = home / ".ssh"
    if ssh not in path.parents:
        return None
    try:
        return str(ssh), stat.S_IMODE(ssh.stat().st_mode)
    except OSError:
        return None


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_KEY_BYTES)
    except OSError:
        return None


def _defaults(home: Path) -> dict[str, str]:
    """Fingerprints of the person's default identities (from their .pub, else the key)."""
    found: dict[str, str] = {}
    for name in DEFAULT_IDENTITIES:
        base = home / ".ssh" / name
        pub = _read(base.with_name(name + ".pub"))
        info: KeyInfo | None = None
        if pub is not None:
            try:
                info = parse_public(pub.decode("utf-8", "replace"))[0]
            except (ValueError, IndexError, struct.error):
                info = None
        if info is None and (data := _read(base)) is not None:
            info = read_private(data)[0]
        if info is not None:
            found[info.fingerprint] = str(base)
    return found


@dataclass(frozen=True)
class _Pub:
    present: bool
    info: KeyInfo | None
    problem: str | None
    comment: str


def _public_side(path: Path) -> _Pub:
    data = _read(path.with_name(path.name + ".pub"))
    if data is None:
        return _Pub(False, None, None, "")
    try:
        info, comment = parse_public(data.decode("utf-8", "replace"))
    except (ValueError, IndexError, struct.error) as err:
        return _Pub(True, None, str(err), "")
    return _Pub(True, info, None, comment)


def _created(path: Path, comment: str) -> tuple[dt.date | None, str]:
    match = COMMENT_RE.search(comment)
    if match:
        try:
            return dt.date.fromisoformat(match.group(1)), "key comment"
        except ValueError:
            pass
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None, "unknown"
    return dt.datetime.fromtimestamp(mtime, dt.UTC).date(), "file mtime"


def gather_one(index: int, written: str, root: Path, home: Path,
               defaults: dict[str, str]) -> KeyFacts:
    path = Path(written).expanduser()
    path = path if path.is_absolute() else root / path
    is_link = path.is_symlink()
    target = Path(os.path.realpath(path)) if is_link else None
    kind = _file_type(path)
    data = _read(path) if kind == "file" else None
    info, encrypted, problem = read_private(data) if data is not None else (None, False, None)
    pub = _public_side(path)
    if info is None and encrypted and pub.info is not None:
        info = pub.info
    mode: int | None = None
    owner: int | None = None
    try:
        st = path.stat()
        mode, owner = stat.S_IMODE(st.st_mode), st.st_uid
    except OSError:
        pass
    key_fp = info.fingerprint if info else (pub.info.fingerprint if pub.info else None)
    created, source = _created(path, pub.comment)
    return KeyFacts(
        index=index, written=written, path=path, is_symlink=is_link, target=target,
        file_type=kind, readable=data is not None, mode=mode, owner=owner,
        current_user=os.getuid(), loose_dirs=_loose_dirs(target or path),
        ssh_dir=_ssh_dir(path, home), info=info, encrypted=encrypted, problem=problem,
        pub_present=pub.present,
        pub_info=pub.info, pub_problem=pub.problem,
        default_identity=defaults.get(key_fp) if key_fp else None,
        created=created, created_source=source,
    )


def gather(keys: object, root: Path, home: Path | None = None) -> tuple[KeyFacts, ...]:
    """Facts for every literal path in ``ssh.keys`` (ERB-rendered entries are skipped)."""
    from kamal_secure.config.erb import is_dynamic

    if not isinstance(keys, list):
        return ()
    home = home or Path.home()
    defaults = _defaults(home)
    return tuple(gather_one(i, k, root, home, defaults) for i, k in enumerate(keys)
                 if isinstance(k, str) and k and not is_dynamic(k))


# Certificate mode's CA (issue #17): where its private key lives by default.
DEFAULT_CA_PATH = "~/.ssh/kamal_ca"


def git_root(start: Path) -> Path | None:
    """The work tree holding ``start`` (the nearest ancestor with a ``.git`` entry), found
    without running git: git would read the repository's own config (fsmonitor, hooks)."""
    here = start.resolve()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return None


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (which need not exist) is under ``root``, symlinks resolved."""
    nearest = path.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    return (nearest.resolve() / path.name).is_relative_to(root.resolve())


@dataclass(frozen=True)
class CaFacts:
    """Certificate mode's CA, as named by the policy or the environment (never its key)."""

    source: str  # how certificate mode was named: "certificates.ca", "KAMAL_SECURE_CA_ENV", ...
    key: KeyFacts | None  # the CA private key file (and its .pub); None: the CA is in a variable
    env_info: KeyInfo | None = None  # the CA key held in the variable, when readable
    repository: Path | None = None  # the repository (or project) the key file sits in

    @property
    def fingerprint(self) -> str | None:
        """The CA's public key fingerprint; None when it could not be read."""
        if self.env_info is not None:
            return self.env_info.fingerprint
        if self.key is None:
            return None
        info = self.key.pub_info or self.key.info
        return info.fingerprint if info is not None else None


@dataclass(frozen=True)
class CaChoice:
    """How certificate mode names its CA: exactly one of ``env`` (the name of a variable
    holding the private key text), ``agent`` (the CA's .pub; the key is in an ssh-agent)
    and ``path`` (a private key file). ``how`` says which setting named it."""

    how: str  # KAMAL_SECURE_CA_ENV, KAMAL_SECURE_CA_AGENT or certificates.ca
    env: str | None = None
    agent: Path | None = None
    path: Path | None = None


def ca_choice(policy_ca: Path | None, environ: Mapping[str, str]) -> CaChoice | None:
    """The one decision of certificate mode, for the gate (which mints) and the checks
    (which judge the CA): the environment wins over the policy; None is key mode.
    Raises UsageError for both variables at once or an unusable value (fail closed)."""
    from kamal_secure.errors import UsageError
    from kamal_secure.gate.kamal import CA_AGENT, CA_ENV

    named, agent = environ.get(CA_ENV), environ.get(CA_AGENT)
    if named is not None and agent is not None:
        raise UsageError(f"{CA_ENV} and {CA_AGENT} are both set: name one CA")
    if named is not None:
        if not named.strip() or "=" in named:
            raise UsageError(f"{CA_ENV} must be the name of the variable holding the CA key")
        return CaChoice(CA_ENV, env=named)
    if agent is not None:
        if agent != "1":
            raise UsageError(f"{CA_AGENT} must be 1 (sign with the CA key in the ssh-agent)")
        return CaChoice(CA_AGENT, agent=Path(f"{policy_ca or DEFAULT_CA_PATH}.pub"))
    return CaChoice("certificates.ca", path=policy_ca) if policy_ca is not None else None


def gather_ca(policy_ca: Path | None, root: Path, environ: Mapping[str, str] | None = None,
              home: Path | None = None) -> CaFacts | None:
    """The CA in certificate mode (:func:`ca_choice` decides, as for the gate), None when
    not in certificate mode."""
    environ = os.environ if environ is None else environ
    choice = ca_choice(policy_ca, environ)
    if choice is None:
        return None
    if choice.env is not None:
        from kamal_secure.gate.kamal import take_secret

        # taken out of the environment before anything ran (gate.kamal.hold_ca_secret)
        data = environ.get(choice.env, "").encode() or take_secret(choice.env) or b""
        info = read_private(data)[0] if data else None
        return CaFacts(choice.how, None, env_info=info)
    path = str(choice.path) if choice.path is not None else DEFAULT_CA_PATH
    key = gather_one(0, path, root, home or Path.home(), {})
    repository = git_root(root) or root
    return CaFacts(choice.how, key,
                   repository=repository if inside(key.path, repository) else None)
