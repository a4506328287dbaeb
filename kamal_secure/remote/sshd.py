"""Read a host's effective sshd settings and the deploy user's authorized_keys.

One remote command does the common case: ``sshd -T -C user=U,host=A,addr=A,
laddr=L,lport=P`` with A, L, P taken from the host's own ``$SSH_CONNECTION``
(our address as the server sees it, also through a jump host), run as root
directly, else ``sudo -n``, else with ``-h <throwaway host key>``. If none runs,
the files are fetched and parsed (:mod:`sshd_config`), labelled derived.

Every value from our side (the user name, file paths) is passed as a quoted
argument (``shlex.quote``/``shlex.join``); the script text itself is constant.
"""

from __future__ import annotations

import functools
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Protocol

from kamal_secure.facts.host import (
    SOURCE_HOSTKEY,
    SOURCE_ROOT,
    SOURCE_SUDO,
    AuthorizedKey,
    FileState,
    HostFile,
    SshdConfig,
)
from kamal_secure.remote.authorized import parse_authorized_keys
from kamal_secure.remote.sshd_config import ConnInfo, derive

SOURCES = {"root": SOURCE_ROOT, "sudo": SOURCE_SUDO, "hostkey": SOURCE_HOSTKEY}

# $0 = section marker, $1 = user; stdin: a throwaway host key for `sshd -T -h` (made
# here, trusted by nothing, never used to authenticate; written 0600 into a mktemp
# directory and removed). Nothing from the config is spliced into this text.
SCRIPT = r"""
M=$0; U=$1
sec() { printf '\n%s %s\n' "$M" "$1"; }
set -- ${SSH_CONNECTION:-}
A=${1:-}; LA=${3:-}; LP=${4:-}
SPEC="user=$U,host=$A,addr=$A,laddr=$LA,lport=$LP"
S=/usr/sbin/sshd; [ -x "$S" ] || S=$(command -v sshd 2>/dev/null) || S=sshd
sec uid; id -u
sec home; printf '%s\n' "$HOME"
sec groups; id -Gn 2>/dev/null
sec conn; printf '%s|%s|%s|%s\n' "$A" "$LA" "$LP" "$SPEC"
T=; OUT=
if [ "$(id -u)" = 0 ]; then
  OUT=$("$S" -T -C "$SPEC" 2>&1) && T=root
elif OUT=$(sudo -n "$S" -T -C "$SPEC" 2>&1); then
  T=sudo
else
  D=$(mktemp -d 2>/dev/null) && (umask 077 && cat > "$D/k") &&
    OUT=$("$S" -T -C "$SPEC" -h "$D/k" 2>&1) && T=hostkey
  [ -n "${D:-}" ] && rm -rf -- "$D"
fi
sec "sshd $T"; printf '%s\n' "$OUT"
[ -n "$T" ] || exit 0
xp() {  # AuthorizedKeysFile tokens, as sshd expands them: %h %u %U %%, relative to $HOME
  w=$1; o=
  while :; do
    case $w in
      *%*) o=$o${w%%\%*}; w=${w#*\%}
        case $w in
          h*) o=$o$HOME ;; u*) o=$o$U ;; U*) o=$o$(id -u) ;; %*) o=$o% ;;
          *) o=$o%${w%"${w#?}"} ;;
        esac
        w=${w#?} ;;
      *) o=$o$w; break ;;
    esac
  done
  case $o in /*) ;; *) o=$HOME/$o ;; esac
  printf '%s' "$o"
}
set -f
for w in $(printf '%s\n' "$OUT" | sed -n 's/^authorizedkeysfile //p'); do
  [ "$w" = none ] && continue
  P=$(xp "$w"); sec "file $P"; cat -- "$P" 2>/dev/null
done
exit 0
"""
CAT_SCRIPT = r'for f do printf "\n%s %s\n" "$0" "$f"; cat -- "$f" 2>/dev/null; done'
# One file (the sshd_config fallback, the files TrustedUserCAKeys and RevokedKeys name):
# "absent", "unreadable" (exists, or we cannot look: its nearest existing directory is not
# searchable) or "ok" followed by the text; the three must never be confused (fail closed).
READ_SCRIPT = r"""
d=$(dirname -- "$1")
while [ ! -d "$d" ] && [ "$d" != / ] && [ "$d" != . ]; do d=$(dirname -- "$d"); done
if [ ! -e "$1" ] && [ ! -L "$1" ] && [ -x "$d" ]; then printf '\n%s absent\n' "$0"
elif [ -r "$1" ] && [ ! -d "$1" ] && T=$(cat -- "$1" 2>/dev/null; echo x); then
  printf '\n%s ok\n%s' "$0" "${T%x}"
else printf '\n%s unreadable\n' "$0"; fi
exit 0
"""
# An Include glob: the matching paths, or "?unlistable" when its directory cannot be read.
GLOB_SCRIPT = r"""
d=$(dirname -- "$1")
if [ -d "$d" ] && { [ ! -r "$d" ] || [ ! -x "$d" ]; }; then echo '?unlistable'; exit 0; fi
for f in $1; do [ -e "$f" ] && printf "%s\n" "$f"; done; exit 0
"""


class Runner(Protocol):
    def run(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]: ...


@functools.cache
def throwaway_host_key() -> bytes:
    """One ed25519 key per process: lets a non-root `sshd -T` start; authenticates nothing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())


@dataclass
class SshdFacts:
    sshd: SshdConfig | None = None
    uid: str = ""
    home: str = ""
    conn: ConnInfo | None = None
    authorized_keys: tuple[AuthorizedKey, ...] | None = None
    trusted_ca: HostFile | None = None
    revoked_keys: HostFile | None = None
    notes: list[str] = field(default_factory=list)


def sections(text: str, marker: str) -> dict[str, str]:
    """Split output at ``<marker> <name>`` lines (the marker is random per command)."""
    out: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith(marker + " "):
            lines = out.setdefault(line[len(marker) + 1:], [])
        elif lines is not None:
            lines.append(line)
    return {name: "\n".join(body).strip("\n") for name, body in out.items()}


def gather(runner: Runner, user: str) -> SshdFacts:
    marker = "KS-" + secrets.token_hex(8)
    _, text = runner.run(["sh", "-c", SCRIPT, marker, user], throwaway_host_key())
    parts = sections(text, marker)
    facts = SshdFacts(uid=parts.get("uid", ""), home=parts.get("home", ""))
    addr, laddr, lport, _ = (parts.get("conn", "") + "|||").split("|")[:4]
    groups = tuple(parts["groups"].split()) if parts.get("groups", "").strip() else None
    facts.conn = ConnInfo(user, addr, addr, laddr, lport, groups)
    for name, body in parts.items():
        kind = name.removeprefix("sshd ").strip()
        if name.startswith("sshd") and kind in SOURCES:
            facts.sshd = SshdConfig.parse(body, SOURCES[kind])
    if facts.sshd is None:
        error = (parts.get("sshd") or "no output").splitlines()[0][:200]
        facts.notes.append(f"sshd -T could not run (not root, no sudo -n, -h failed: {error})")
        facts.sshd, notes = derive(facts.conn, lambda p: read_file(runner, p),
                                   lambda p: glob(runner, p))
        facts.notes.extend(notes)
    if facts.sshd is None:  # AuthorizedKeysFile unknown: do not guess the files
        facts.notes.append("authorized_keys not read: AuthorizedKeysFile unknown")
        return facts
    preloaded = {name[5:]: body for name, body in parts.items() if name.startswith("file ")}
    facts.authorized_keys = read_authorized_keys(runner, facts, preloaded)
    facts.trusted_ca = named_file(runner, facts.sshd, "trustedusercakeys", keys=True)
    facts.revoked_keys = named_file(runner, facts.sshd, "revokedkeys")
    return facts


def named_file(runner: Runner, sshd: SshdConfig, keyword: str,
               keys: bool = False) -> HostFile | None:
    """The file a setting names (None when it is ``none``). A path with %-tokens is not
    expanded here: it is reported unreadable (unknown), never absent."""
    value = sshd.get(keyword)
    if value is None or not value.strip() or value.strip().lower() == "none":
        return None
    path = value.strip()
    if "%" in path or not path.startswith("/"):
        return HostFile(path, "unreadable")
    state, text = read_state(runner, path)
    found = parse_authorized_keys(text, path) if keys and state == "ok" else []
    return HostFile(path, state, tuple(found))


def read_file(runner: Runner, path: str) -> str | None:
    """The file's text, "" when it does not exist, None when it exists but cannot be read
    (or the answer is not one we understand: unknown is never empty)."""
    state, text = read_state(runner, path)
    return None if state == "unreadable" else text


def read_state(runner: Runner, path: str) -> tuple[FileState, str]:
    """Whether the file is there ("ok", with its text), "absent", or "unreadable" (exists
    but cannot be read, or an answer we do not understand: unknown is never absent)."""
    marker = "KS-" + secrets.token_hex(8)
    _, text = runner.run(["sh", "-c", READ_SCRIPT, marker, path])
    parts = sections(text, marker)
    if "ok" in parts:
        return "ok", parts["ok"]
    if "absent" in parts:
        return "absent", ""
    return "unreadable", ""


def glob(runner: Runner, pattern: str) -> list[str] | None:
    _, text = runner.run(["sh", "-c", GLOB_SCRIPT, "glob", pattern])
    lines = [line for line in text.splitlines() if line]
    return None if "?unlistable" in lines else lines


def authorized_keys_paths(facts: SshdFacts, user: str) -> list[str]:
    spec = (facts.sshd.get("authorizedkeysfile") if facts.sshd else None) or \
        ".ssh/authorized_keys .ssh/authorized_keys2"
    paths = []
    for word in spec.split():
        if word.lower() == "none":
            continue
        word = word.replace("%%", "\0").replace("%h", facts.home).replace("%u", user)
        word = word.replace("%U", facts.uid).replace("\0", "%")
        paths.append(word if word.startswith("/") else f"{facts.home}/{word}")
    return paths


def read_authorized_keys(runner: Runner, facts: SshdFacts,
                         preloaded: dict[str, str] | None = None,
                         ) -> tuple[AuthorizedKey, ...] | None:
    """The files the main script already printed are used; any other path is fetched."""
    user = facts.conn.user if facts.conn else ""
    paths = authorized_keys_paths(facts, user)
    if not paths or not facts.home:
        return None
    found = dict(preloaded or {})
    missing = [path for path in paths if path not in found]
    if missing:
        marker = "KS-" + secrets.token_hex(8)
        _, text = runner.run(["sh", "-c", CAT_SCRIPT, marker, *missing])
        found.update(sections(text, marker))
    keys: list[AuthorizedKey] = []
    for path in paths:
        keys.extend(parse_authorized_keys(found.get(path, ""), path))
    return tuple(keys)


def quoted(argv: list[str]) -> str:
    """What the remote login shell receives for ``argv``: for tests and docs."""
    return shlex.join(argv)
