"""The facts drift watch compares, read over the host checks' own session (no new login).

Two more commands on the connection the host checks already opened: one reads the
accounts, groups, sudo rules, listening TCP sockets and host public keys (the
TrustedUserCAKeys file comes with the host checks' facts); the second reads the deploy
user's (and root's) authorized_keys files, whose paths come from the effective
``AuthorizedKeysFile`` and the homes the first command printed. Only fingerprints,
names, options and settings are kept: never a key blob, never a command or environment
value from an authorized_keys option (those are kept as a digest). Whatever could not be
read is recorded as *unknown*, with why.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Any

from kamal_secure.facts.host import SOURCE_HOSTKEY, HostFacts, HostFile, split_options
from kamal_secure.remote.authorized import blob_fingerprint, parse_authorized_keys
from kamal_secure.remote.sshd import Runner, SshdFacts, authorized_keys_paths, sections
from kamal_secure.secretscan import looks_secret, vendor_match

GROUPS = ("docker", "sudo", "wheel", "admin")  # root-equivalent on a Kamal host
HOSTKEY_GLOB = "/etc/ssh/ssh_host_*_key.pub"
HASHED_OPTIONS = ("command", "environment")  # may carry secrets: kept as a digest
QUOTE = '"'
# First words of what sshd -T says on stderr ("Unable to load host key: ..."), which the host
# checks' output carries along: no sshd keyword is one of them.
DIAGNOSTICS = frozenset({"unable", "could", "error", "warning", "fatal", "bad", "missing",
                         "sshd:", "debug1", "debug2", "debug3"})

# $0 marker, $1 deploy user, $2.. host key .pub files (the TrustedUserCAKeys file was read
# with the host's facts: HostFacts.trusted_ca).
# Constant text: every value from our side arrives as a quoted argument.
INFO_SCRIPT = r"""
M=$0; U=$1; shift
sec() { printf '\n%s %s\n' "$M" "$1"; }
sec uid; id -u
if command -v getent >/dev/null 2>&1; then
  sec passwd; getent passwd "$U" root | cut -d: -f1,3,6
  sec groups; getent group docker sudo wheel admin
  G=" $(getent group docker sudo wheel admin | cut -d: -f3 | tr '\n' ' ') "
  sec primary; echo ok  # then only the accounts whose primary group is one of those
  getent passwd | awk -F: -v g="$G" 'index(g, " " $4 " ") { print $1 ":" $4 }'
fi
if ! command -v sudo >/dev/null 2>&1; then sec "sudo absent"
elif [ "$(id -u)" = 0 ]; then sec "sudo root"; sudo -n -l -U "$U" 2>&1
elif O=$(sudo -n -l 2>&1); then sec "sudo self"; printf '%s\n' "$O"
else sec "sudo refused"; printf '%s\n' "$O" | head -n 1
fi
if command -v ss >/dev/null 2>&1 && O=$(ss -Htlnp 2>/dev/null); then sec ss; printf '%s\n' "$O"
else sec proc; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
fi
if [ "$#" = 0 ]; then set -- /etc/ssh/ssh_host_*_key.pub; fi
for f do [ -e "$f" ] || continue; sec "hostkey $f"; cat -- "$f" 2>/dev/null; done
exit 0
"""

# $0 marker, then files: each one printed, or said absent (its nearest existing directory
# is searchable, so it really is not there) or unreadable (we cannot tell).
FILES_SCRIPT = r"""
M=$0
sec() { printf '\n%s %s\n' "$M" "$1"; }
for f do
  if [ -r "$f" ] && [ -f "$f" ]; then sec "file $f"; cat -- "$f"
  elif [ -e "$f" ] && sudo -n cat -- "$f" >/dev/null 2>&1; then sec "file $f"; sudo -n cat -- "$f"
  elif [ -e "$f" ]; then sec "unreadable $f"
  else
    p=$f
    while p=${p%/*}; [ -n "$p" ] && [ ! -d "$p" ]; do :; done
    if [ -x "${p:-/}" ]; then sec "absent $f"; else sec "unreadable $f"; fi
  fi
done
exit 0
"""


@dataclass
class HostState:
    """One host's facts: ``kind`` -> ``subject`` -> value, and the kinds that are unknown."""

    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)  # kind -> why it is unknown

    def put(self, kind: str, subject: str, value: Any) -> None:
        bucket = self.facts.setdefault(kind, {})
        name, n = subject, 1
        while name in bucket:  # the same subject twice (a key listed twice): keep both
            n += 1
            name = f"{subject}#{n}"
        bucket[name] = value

    def lost(self, kind: str, why: str) -> None:
        self.facts.pop(kind, None)
        self.unknown.setdefault(kind, why)


@dataclass(frozen=True)
class Account:
    name: str
    uid: str
    home: str


def collect(runner: Runner, facts: HostFacts) -> HostState:
    """Everything drift watch compares, for the host ``facts`` came from."""
    state = HostState()
    sshd = facts.sshd
    _settings(state, facts)
    pubs = [] if sshd is None or sshd.source == SOURCE_HOSTKEY else [
        f"{path.split()[0]}.pub" for path in sshd.all("hostkey") if path.strip()]
    marker = "KS-" + secrets.token_hex(8)
    _, text = runner.run(["sh", "-c", INFO_SCRIPT, marker, facts.user, *pubs])
    parts = sections(text, marker)
    accounts = parse_accounts(parts.get("passwd", ""))
    _groups(state, parts.get("groups", ""), parts.get("primary", ""))
    _sudo(state, parts, facts.user)
    _listeners(state, parts)
    _host_keys(state, parts)
    _ca_keys(state, facts.trusted_ca, sshd is not None)
    _authorized(state, runner, facts, accounts, parts.get("uid", "").strip())
    return state


def _settings(state: HostState, facts: HostFacts) -> None:
    sshd = facts.sshd
    if sshd is None:
        state.lost("sshd", "sshd -T could not run and the files could not be read")
        return
    state.put("sshd_source", "kind", "derived" if sshd.derived else "sshd -T")
    values: dict[str, list[str]] = {}
    for key, value in sshd.entries:
        # with -h, hostkey names our throwaway key: host keys are their own kind
        if key != "hostkey" and key not in DIAGNOSTICS:
            values.setdefault(key, []).append(value)
    for key, found in values.items():
        state.put("sshd", key, scrub(" | ".join(found)))


def parse_accounts(text: str) -> dict[str, Account]:
    out: dict[str, Account] = {}
    for line in text.splitlines():
        name, _, rest = line.strip().partition(":")
        uid, _, home = rest.partition(":")
        if name and uid:
            out.setdefault(name, Account(name, uid, home))
    return out


def _groups(state: HostState, groups: str, primary: str) -> None:
    if not primary.startswith("ok"):
        state.lost("group", "getent is not available")
        return
    by_gid: dict[str, list[str]] = {}
    for line in primary.splitlines():
        user, _, gid = line.strip().partition(":")
        if user and gid:
            by_gid.setdefault(gid, []).append(user)
    for line in groups.splitlines():
        fields = line.strip().split(":")
        if len(fields) < 4 or fields[0] not in GROUPS:
            continue
        name, gid, members = fields[0], fields[2], fields[3]
        for user in sorted({m for m in members.split(",") if m}):
            state.put("group", f"{name} {user}", "member")
        for user in sorted(set(by_gid.get(gid, [])) - set(members.split(","))):
            state.put("group", f"{name} {user}", "primary group")
    state.facts.setdefault("group", {})


def _sudo(state: HostState, parts: dict[str, str], user: str) -> None:
    if "sudo absent" in parts:
        state.facts.setdefault("sudoers", {})
        return
    body = parts.get("sudo root", parts.get("sudo self"))
    if body is None:
        why = parts.get("sudo refused", "").strip() or "no answer"
        state.lost("sudoers", f"sudo -n -l as {user}: {why[:200]}")
        return
    for rule in sudo_rules(body):
        state.put("sudoers", f"{user} {scrub(rule)}", "")
    state.facts.setdefault("sudoers", {})


def sudo_rules(text: str) -> list[str]:
    """The command lines of ``sudo -l``; its Defaults section (paths, env) is left out."""
    rules: list[str] = []
    taking = False
    for line in text.splitlines():
        if line.startswith("User ") and "may run the following commands" in line:
            taking = True
            continue
        if not line.startswith((" ", "\t")):
            taking = False
            continue
        if taking and line.strip():
            rules.append(" ".join(line.split()))
    return rules


def _listeners(state: HostState, parts: dict[str, str]) -> None:
    if "ss" in parts:
        found = parse_ss(parts["ss"])
    elif parts.get("proc", "").strip():
        found = parse_proc_net(parts["proc"])
    else:
        state.lost("listen", "neither ss nor /proc/net/tcp could be read")
        return
    for address, processes in sorted(found.items()):
        state.put("listen", address, processes)
    state.facts.setdefault("listen", {})


def parse_ss(text: str) -> dict[str, str]:
    """``ss -Htlnp``: local address -> process names ("?" when not ours to see)."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] != "LISTEN":
            continue
        names: set[str] = set()
        if "users:(" in line:
            for piece in line.split("users:(", 1)[1].split("(")[1:]:
                if piece.startswith('"'):
                    names.add(piece.split('"')[1])
        out.setdefault(_address(fields[3]), set()).update(names)
    return {addr: ",".join(sorted(names)) or "?" for addr, names in out.items()}


def _address(local: str) -> str:
    host, _, port = local.rpartition(":")
    host = host.strip("[]").split("%")[0]  # [::]:80, 127.0.0.53%lo:53
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_proc_net(text: str) -> dict[str, str]:
    """/proc/net/tcp{,6} LISTEN rows (state 0A); no process names there."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        hexaddr, _, hexport = fields[1].partition(":")
        try:
            raw = bytes.fromhex(hexaddr)
            port = int(hexport, 16)
        except ValueError:
            continue
        # the kernel prints each 32-bit word in host (little-endian) order
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        if len(words) == 4:
            out[f"{ipaddress.IPv4Address(words)}:{port}"] = "?"
        elif len(words) == 16:
            out[f"[{ipaddress.IPv6Address(words).compressed}]:{port}"] = "?"
    return out


def _host_keys(state: HostState, parts: dict[str, str]) -> None:
    found = False
    for name, body in sorted(parts.items()):
        if not name.startswith("hostkey "):
            continue
        words = body.split()
        fingerprint = blob_fingerprint(words[1]) if len(words) >= 2 else None
        if fingerprint is None:
            state.lost("hostkey", f"{name[8:]} is not a public key file")
            return
        state.put("hostkey", words[0], fingerprint)
        found = True
    if not found:
        state.lost("hostkey", f"no host public key could be read ({HOSTKEY_GLOB})")


def _ca_keys(state: HostState, trusted: HostFile | None, known: bool) -> None:
    """``trusted``: the TrustedUserCAKeys file as the host's facts read it (None: none)."""
    if not known:
        state.lost("ca_key", "TrustedUserCAKeys unknown: sshd -T could not run")
        return
    if trusted is None:
        state.facts.setdefault("ca_key", {})
        return
    if trusted.state != "ok":
        state.lost("ca_key", f"TrustedUserCAKeys {trusted.path} is not readable")
        return
    for key in trusted.keys:
        state.put("ca_key", key.fingerprint, key.key_type)
    state.facts.setdefault("ca_key", {})


def _authorized(state: HostState, runner: Runner, facts: HostFacts,
                accounts: dict[str, Account], uid: str) -> None:
    users = [facts.user] + (["root"] if facts.user != "root" else [])
    if facts.sshd is None:
        for user in users:
            state.lost(f"authorized_key {user}", "AuthorizedKeysFile unknown")
        return
    wanted: dict[str, list[str]] = {}
    for user in users:
        account = accounts.get(user)
        if account is None or not account.home:
            state.lost(f"authorized_key {user}", f"no account {user} (getent passwd)")
            continue
        # root's files: the deploy user's effective AuthorizedKeysFile, expanded for root
        wanted[user] = authorized_keys_paths(
            SshdFacts(sshd=facts.sshd, uid=account.uid, home=account.home), user)
    paths = sorted({p for found in wanted.values() for p in found})
    marker = "KS-" + secrets.token_hex(8)
    parts = sections(runner.run(["sh", "-c", FILES_SCRIPT, marker, *paths])[1],
                     marker) if paths else {}
    for user, found in wanted.items():
        kind = f"authorized_key {user}"
        unreadable = [p for p in found if f"unreadable {p}" in parts or
                      not any(f"{state_} {p}" in parts for state_ in ("file", "absent"))]
        if unreadable:
            who = "root" if uid == "0" else facts.user
            state.lost(kind, f"{', '.join(unreadable)} not readable as {who}")
            continue
        state.facts.setdefault(kind, {})
        for path in found:
            for key in parse_authorized_keys(parts.get(f"file {path}", ""), path):
                state.put(kind, key.fingerprint, {"type": key.key_type,
                                                  "options": safe_options(key.options),
                                                  "comment": scrub(key.comment)})


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def scrub(text: str) -> str:
    """Free text from a host with anything that looks like a secret replaced by a digest
    (a change still shows; the value never reaches the state file): a known token shape
    anywhere, or ``name=value`` where the name says secret and the value looks like one."""
    if vendor_match(text):
        return f"<redacted: {vendor_match(text)}, sha256:{_digest(text)}>"
    words = []
    for word in text.split(" "):
        name, eq, value = word.partition("=")
        if eq and looks_secret(name.lstrip("-"), value.strip("'\"")):
            word = f"{name}=<sha256:{_digest(value)}>"
        words.append(word)
    return " ".join(words)


def safe_options(options: str) -> str:
    """authorized_keys options with command=/environment= values replaced by a digest."""
    out = []
    for part in split_options(options):
        name, eq, value = part.partition("=")
        if eq and name.lower() in HASHED_OPTIONS:
            out.append(f"{name}=<sha256:{_digest(value.strip(QUOTE))}>")
        else:
            out.append(part)
    return ",".join(out)
