"""Acting on hosts (not just reading them): sessions with chosen login keys, fixed scripts.

Every script is a constant; values reach it only as positional arguments
(``sh -c SCRIPT sh ARG...``, each quoted by Session.run) or on stdin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import paramiko

from kamal_secure.config.inventory import Inventory, Target
from kamal_secure.errors import CheckIncomplete, UsageError
from kamal_secure.remote import hostkeys, session

Credential = paramiko.PKey  # a private key we may log in with


def key_from_file(path: Path) -> list[Credential]:
    """A private key file (or, when encrypted, the agent's copy of it)."""
    return session.key_file(path.expanduser(), session.agent_keys())


def connector(inventory: Inventory, root: Path, keys: list[paramiko.PKey],
              timeout: float = 20.0) -> session.Connector:
    known = hostkeys.load_known_hosts(hostkeys.known_hosts_files(root))
    # fix commands act on the user's own project: ssh.proxy_command is how Kamal gets there
    return session.Connector(inventory.ssh, known, keys, timeout, allow_proxy_command=True)


def only_key(inventory: Inventory, root: Path, path: Path, timeout: float = 20.0,
             certificate: bytes | None = None) -> session.Connector:
    """A connector that logs in with this one key and nothing else (keys_only); with
    ``certificate`` (a ``-cert.pub`` line for that key), with that certificate alone (the
    server cannot accept the plain key instead: paramiko offers only the certificate)."""
    keys = key_from_file(path) if certificate is None else certified(path, certificate)
    if not keys:
        raise UsageError(f"cannot load the private key {path}")
    ssh = replace(inventory.ssh, keys=(str(path),), keys_only=True)
    return session.Connector(ssh, hostkeys.load_known_hosts(hostkeys.known_hosts_files(root)),
                             keys, timeout, allow_proxy_command=True)


def certified(path: Path, certificate: bytes) -> list[paramiko.PKey]:
    """The key file ``path`` with ``certificate`` (a ``-cert.pub`` line for it) loaded:
    paramiko then offers the certificate, never the plain key."""
    keys = key_from_file(path)
    if not keys:
        raise UsageError(f"cannot load the private key {path}")
    if any(isinstance(k, paramiko.AgentKey) for k in keys):
        raise UsageError(f"{path} is encrypted: a certificate login needs the key file "
                         "unencrypted (or use ssh -o CertificateFile by hand)")
    for key in keys:
        key.load_certificate(certificate.decode())
    return keys


def open_target(conn: session.Connector, target: Target) -> session.Session:
    if target.dynamic:
        raise CheckIncomplete(f"{target.label}: the host name comes from ERB")
    return conn.open_host(target.name)


def script(sess: session.Session, text: str, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    return sess.run(["sh", "-c", text, "sh", *args], stdin)


# The one way a file on a host is replaced. $1 path (relative: under $HOME), $2 mode,
# $3 length and $4 SHA-256 of what we send on stdin, $5 SHA-256 the file must still have
# (compare-and-swap; empty: do not check), $6 mode to create the directory with (empty:
# it must exist). The data goes to a temp file beside the target; it is renamed over the
# target only if it is exactly what was sent, so a dropped connection (the remote `cat`
# reads EOF early) leaves the old file whole. No SHA-256 tool on the host: refused.
PUT = r"""set -eu
f=$1; mode=$2; size=$3; want=$4; before=$5; dmode=$6
case $f in /*) ;; *) f=$HOME/$f ;; esac
d=$(dirname -- "$f")
if command -v sha256sum >/dev/null 2>&1; then sha() { sha256sum | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then sha() { shasum -a 256 | cut -d' ' -f1; }
elif command -v openssl >/dev/null 2>&1; then sha() { openssl dgst -sha256 | sed 's/^.*= *//'; }
else
  cat >/dev/null; echo "no sha256sum, shasum or openssl on the host: $f not replaced"; exit 6
fi
if [ -n "$dmode" ]; then (umask 077; mkdir -p -- "$d"); chmod "$dmode" "$d"; fi
[ -d "$d" ] || { cat >/dev/null; echo "$d does not exist"; exit 5; }
if [ -n "$before" ]; then
  now=$( (cat -- "$f" 2>/dev/null || true) | sha)
  if [ "$now" != "$before" ]; then
    cat >/dev/null; echo "$f changed while we worked; not replaced"; exit 3
  fi
fi
umask 077
t=$(mktemp "$d/.${f##*/}.XXXXXX")
trap 'rm -f -- "$t"' EXIT
trap 'rm -f -- "$t"; exit 1' HUP INT PIPE TERM
cat > "$t"
got=$(wc -c < "$t" | tr -d ' ')
if [ "$got" != "$size" ]; then  # removed before saying so: nobody may be listening
  rm -f -- "$t"; echo "received $got of $size bytes (connection dropped?): $f not replaced"
  exit 7
fi
if [ "$(sha < "$t")" != "$want" ]; then
  rm -f -- "$t"; echo "what arrived does not match its SHA-256: $f not replaced"; exit 7
fi
chmod "$mode" "$t"
sync -- "$t" 2>/dev/null || true
mv -f -- "$t" "$f"
trap - EXIT
sync -- "$d" 2>/dev/null || true
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_argv(path: str, data: bytes, mode: str, before: bytes | None = None,
             dir_mode: str = "") -> list[str]:
    """The command that replaces ``path`` with ``data`` (sent on stdin) on the host, only if
    all of it arrived and, with ``before``, only if the file still holds ``before``."""
    return ["sh", "-c", PUT, "sh", path, mode, str(len(data)), sha256(data),
            sha256(before) if before is not None else "", dir_mode]


def put(sess: session.Session, path: str, data: bytes, mode: str, before: bytes | None = None,
        dir_mode: str = "", prefix: Sequence[str] = ()) -> tuple[int, str]:
    return sess.run([*prefix, *put_argv(path, data, mode, before, dir_mode)], data)


def can_login(conn: session.Connector, target: Target) -> tuple[bool, str]:
    try:
        open_target(conn, target).close()
    except CheckIncomplete as err:
        return False, err.message
    return True, ""


def on_host(conn: session.Connector, target: Target, no_login: str,
            body: Callable[[session.Session], tuple[bool, str]]) -> tuple[bool, str]:
    """Log in, run ``body`` with the open session, close it; every failure becomes a
    per-host (False, message) so one host never stops the others."""
    try:
        sess = open_target(conn, target)
    except CheckIncomplete as err:
        return False, f"{no_login}: {err.message}"
    try:
        return body(sess)
    except CheckIncomplete as err:
        return False, err.message
    except Exception as err:  # one host's failure is reported, not raised
        return False, f"{type(err).__name__}: {err}"
    finally:
        sess.close()
