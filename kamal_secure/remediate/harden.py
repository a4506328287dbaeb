"""The sshd baseline as a drop-in that wins, applied without locking anyone out.

``/etc/ssh/sshd_config.d/00-kamal-secure.conf``: 00- sorts before cloud-init's 50- drop-in
and sshd keeps the first value it reads. Remote steps are constant scripts run as root
(directly or with ``sudo -n``); values reach them only as arguments or on stdin.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass

from kamal_secure.errors import UsageError

DROPIN = "/etc/ssh/sshd_config.d/00-kamal-secure.conf"
# Kamal's net-ssh (Debian's Kamal has no x25519 gem) needs an ECDH or DH-GEX key exchange.
KEX = ("sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
       "ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,"
       "diffie-hellman-group-exchange-sha256")
CIPHERS = ("chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
           "aes256-ctr,aes192-ctr,aes128-ctr")
MACS = "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com"

# `harden --trust-ca`: the CA sshd trusts and the principals each user may log in as (root's
# files, 0644; sshd's StrictModes wants them root-owned and not group/world writable).
CA_FILE = "/etc/ssh/kamal-secure-ca.pub"
PRINCIPALS_DIR = "/etc/ssh/kamal-secure-principals"
# $1 a path: "present" and its text, or "absent".
READ = 'if [ -f "$1" ]; then echo present; cat "$1"; else echo absent; fi'
INCLUDED = ("grep -Eq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\\.d/\\*\\.conf' "
            "/etc/ssh/sshd_config")
VALIDATE = "sshd -t 2>&1"
# $@ KEYWORD=a,b,c (ALGORITHMS, OPTIONAL below): "KEYWORD a" for each candidate this
# host's sshd accepts (an older sshd rejects a newer algorithm's name, and with it the whole
# drop-in: 8.4 has no sntrup761x25519). Tried on sshd's defaults (-f /dev/null), not the
# host's files; "probe-failed" when sshd -t fails even on those (then nothing is left out).
SUPPORTED = """sshd -t -f /dev/null >/dev/null 2>&1 || { echo probe-failed; exit 0; }
for kv in "$@"; do
  k=${kv%%=*}; IFS=,; set -f
  for a in ${kv#*=}; do
    sshd -t -f /dev/null -o "$k=$a" >/dev/null 2>&1 && echo "$k $a"
  done
  unset IFS; set +f
done
exit 0
"""
ALGORITHMS = ("KexAlgorithms", "Ciphers", "MACs")
# Keywords an sshd may not know, left out where it does not. ChallengeResponseAuthentication
# is what turns keyboard-interactive off before OpenSSH 8.7 (KbdInteractiveAuthentication
# then does not); from 8.7 on it is an alias that `sshd -T` never prints, so it is not
# expected there: the live probe (no keyboard-interactive offered) proves it either way.
OPTIONAL = ("ChallengeResponseAuthentication",)
# The only names an older sshd may lack and the drop-in may do without (OpenSSH 8.5 added
# sntrup761x25519). Any other name a host's sshd does not seem to know refuses the host:
# a probe that failed half way must not leave, say, no ECDH key exchange for Kamal.
NEWER = frozenset({"sntrup761x25519-sha512@openssh.com"})
EFFECTIVE = 'sshd -T -C "user=$1,host=$2,addr=$3" 2>&1'
# A shell function (returns, never exits) so that the restore script can use it too.
# `sshd -t` first: a HUP makes sshd re-execute itself, and with a broken config it dies.
RELOAD_FN = """reload_sshd() {
  sshd -t >/dev/null 2>&1 || { echo "sshd -t fails: sshd not reloaded"; return 4; }
  p=$(sshd -T 2>/dev/null | awk '$1 == "pidfile" {print $2}')
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
    systemctl reload ssh
  elif command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet sshd 2>/dev/null; then
    systemctl reload sshd
  elif [ -n "$p" ] && [ -f "$p" ]; then
    kill -HUP "$(cat "$p")"
  else
    echo "cannot tell how to reload sshd (no systemd unit, no PidFile)"; return 4
  fi
}
"""
RELOAD = RELOAD_FN + "reload_sshd\n"

# The dead man's switch (as `netplan try`, `iptables-apply`, Junos `commit confirmed`).
# Before the drop-in changes, ARM saves it (or notes that there was none) in STATE and
# starts a timer on the host, detached from our session, that runs RESTORE after N seconds:
# the previous drop-in back, sshd reloaded. Only CANCEL (after the new login and the live
# probe succeeded) stops it; our death, a dropped connection or a lockout do not.
# systemd-run when systemd is PID 1 and we share its mount namespace (a transient timer
# runs there), else `setsid nohup sh -c 'sleep N; restore'`. RESTORE and CANCEL take the
# same lock (mkdir STATE/fired): exactly one of them acts. The token (random, per run)
# keeps a late timer from acting on a later run's state.
STATE = "/etc/ssh/kamal-secure-rollback"
RESTORE = RELOAD_FN + f"""s={STATE}; f={DROPIN}
[ "$(cat "$s/token" 2>/dev/null)" = "$1" ] || exit 0
mkdir "$s/fired" 2>/dev/null || exit 0
back() {{  # $1 the saved copy (none: the file did not exist), $2 the file
  if [ -f "$1" ]; then
    cp "$1" "$s/restore" && chmod 644 "$s/restore" && mv -f "$s/restore" "$2"
  else
    rm -f "$2"
  fi
}}
back "$s/previous" "$f"
i=0
if [ -f "$s/files" ]; then
  while IFS= read -r p; do i=$((i + 1)); back "$s/previous.$i" "$p"; done < "$s/files"
fi
sync 2>/dev/null || true
rc=0; if [ "$2" != files ]; then reload_sshd || rc=$?; fi
if [ "$2" != timer ]; then
  if [ -f "$s/unit" ]; then systemctl stop "$(cat "$s/unit").timer" 2>/dev/null || true; fi
  if [ -f "$s/pid" ]; then
    p=$(cat "$s/pid"); kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
  fi
elif [ "$rc" != 0 ] && command -v logger >/dev/null 2>&1; then
  logger -t kamal-secure "harden rollback: {DROPIN} restored, sshd reload failed"
fi
rm -rf "$s"
exit "$rc"
"""
# $1 seconds, $2 token, $3 "absent" to roll back to no drop-in (and none of the other files)
# whatever the files hold, $4 the RESTORE script, $5... other files the rollback restores
# (`--trust-ca`: the CA and the principals file) or removes when they did not exist.
# Exit 8 (and the seconds left, or "expired") when an earlier run's switch is still armed.
PENDING = f"""s={STATE}
if [ -e "$s" ]; then
  left=$(( $(cat "$s/deadline" 2>/dev/null || echo 0) - $(date +%s) ))
  if [ "$left" -gt 0 ]; then echo "$left"; else echo expired; fi
  cat "$s/token" 2>/dev/null || true
  exit 8
fi
"""
ARM = PENDING + f"""set -eu
s={STATE}; f={DROPIN}; n=$1; tok=$2; R=$4
umask 077
mkdir "$s"
trap 'rm -rf -- "$s"' EXIT  # not armed (a full disk?): no state left behind
if [ -f "$f" ] && [ "$3" != absent ]; then cp "$f" "$s/previous"; fi
a=$3; shift 4; i=0
for p in "$@"; do
  i=$((i + 1)); printf '%s\n' "$p" >> "$s/files"
  if [ -f "$p" ] && [ "$a" != absent ]; then cp "$p" "$s/previous.$i"; fi
done
echo "$tok" > "$s/token"
echo $(( $(date +%s) + n )) > "$s/deadline"
sync 2>/dev/null || true
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1 &&
   [ "$(readlink /proc/1/ns/mnt 2>/dev/null)" = "$(readlink /proc/self/ns/mnt 2>/dev/null)" ]
then
  u=kamal-secure-rollback-$tok
  if systemd-run --quiet --unit "$u" --on-active="$n" /bin/sh -c "$R" restore "$tok" timer
  then echo "$u" > "$s/unit"; trap - EXIT; echo systemd-run; exit 0; fi
fi
S=; if command -v setsid >/dev/null 2>&1; then S=setsid; fi
$S nohup sh -c 'sleep "$1"; exec sh -c "$2" restore "$3" timer' kamal-secure-rollback \
  "$n" "$R" "$tok" </dev/null >/dev/null 2>&1 &
echo $! > "$s/pid"
trap - EXIT
echo "${{S:-nohup}}"
"""
# RESTORE: $1 token, $2 timer | now (also disarms the timer) | files (now, no reload: sshd
# never ran the new drop-in).
# CANCEL: $1 token. 0: disarmed; 10: the timer already restored the previous settings.
CANCEL = f"""s={STATE}
[ "$(cat "$s/token" 2>/dev/null)" = "$1" ] || {{ echo "no rollback armed by this run"; exit 10; }}
mkdir "$s/fired" 2>/dev/null || {{ echo "the rollback timer already ran"; exit 10; }}
if [ -f "$s/unit" ]; then systemctl stop "$(cat "$s/unit").timer" 2>/dev/null || true; fi
if [ -f "$s/pid" ]; then
  p=$(cat "$s/pid"); kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
fi
rm -rf "$s"
"""


@dataclass(frozen=True)
class Baseline:
    user: str
    allow: tuple[str, ...]  # AllowUsers patterns
    settings: tuple[tuple[str, str], ...]

    def text(self) -> str:
        lines = [f"{k} {v}" for k, v in self.settings]
        lines.append("AllowUsers " + " ".join(self.allow))
        return ("# Written by `kamal-secure harden`; `sshd -t` checked it before sshd was "
                "reloaded.\n# 00- sorts first in sshd_config.d: sshd keeps the first value "
                "it reads.\n" + "\n".join(lines) + "\n")

    def narrowed(self, supported: dict[str, list[str]]) -> tuple[Baseline, list[str]]:
        """This baseline for a host whose sshd accepts only ``supported`` of each of
        ``ALGORITHMS`` and ``OPTIONAL`` (a keyword absent from it: no narrowing), and what
        was left out."""
        settings: list[tuple[str, str]] = []
        left_out: list[str] = []
        for key, value in self.settings:
            if key in supported:
                wanted = value.split(",")
                kept = [a for a in wanted if a in supported[key]]
                if not kept and key in OPTIONAL:
                    left_out.append(key)
                    continue
                missing = [a for a in wanted if a not in kept]
                unexpected = [a for a in missing if a not in NEWER]
                if unexpected:
                    raise UsageError(f"this host's sshd does not accept {key} "
                                     f"{','.join(unexpected)} (only names newer than its "
                                     f"OpenSSH are left out: {', '.join(sorted(NEWER))})")
                left_out.extend(missing)
                value = ",".join(kept)
            settings.append((key, value))
        return Baseline(self.user, self.allow, tuple(settings)), left_out

    def expected(self) -> dict[str, str]:
        """What ``sshd -T`` must report afterwards (lowercase keys)."""
        want = {k.lower(): v.lower() for k, v in self.settings if k not in OPTIONAL}
        want["permitrootlogin"] = {"prohibit-password": "without-password"}.get(
            want["permitrootlogin"], want["permitrootlogin"])
        return want


def principals_file(user: str) -> str:
    """The file listing the certificate principals ``user`` may log in as."""
    return f"{PRINCIPALS_DIR}/{user}"


def baseline(user: str, allow_from: list[str], extra_users: list[str],
             thresholds: dict[str, int], tcp_forwarding: str = "no",
             trust_ca: bool = False) -> Baseline:
    allow = [user] if not allow_from else [f"{user}@{_cidr(c)}" for c in allow_from]
    allow.extend(extra_users)
    settings: tuple[tuple[str, str], ...] = (
        ("PasswordAuthentication", "no"), ("KbdInteractiveAuthentication", "no"),
        ("ChallengeResponseAuthentication", "no"),
        ("PermitEmptyPasswords", "no"),
        ("PermitRootLogin", "prohibit-password" if user == "root" else "no"),
        ("PubkeyAuthentication", "yes"), ("HostbasedAuthentication", "no"),
        ("IgnoreRhosts", "yes"), ("StrictModes", "yes"),
        ("MaxAuthTries", str(thresholds.get("max_auth_tries", 4))),
        ("LoginGraceTime", str(thresholds.get("login_grace_time", 60))),
        ("ClientAliveInterval", str(thresholds.get("client_alive_interval", 300))),
        ("ClientAliveCountMax", str(thresholds.get("client_alive_count_max", 3))),
        ("PermitUserEnvironment", "no"), ("X11Forwarding", "no"),
        ("AllowAgentForwarding", "no"), ("AllowTcpForwarding", tcp_forwarding),
        ("PermitTunnel", "no"), ("GatewayPorts", "no"), ("LogLevel", "VERBOSE"),
        ("Ciphers", CIPHERS), ("MACs", MACS), ("KexAlgorithms", KEX),
    )
    if trust_ca:  # additive: the same drop-in, so one switch rolls back all of it
        settings += (("TrustedUserCAKeys", CA_FILE),
                     ("AuthorizedPrincipalsFile", principals_file("%u")))
    return Baseline(user, tuple(allow), settings)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise UsageError(f"--allow-from {value!r} is not an address or CIDR") from None


def mismatches(effective: str, want: dict[str, str]) -> list[str]:
    """``key now -> wanted`` for every setting whose effective value (``sshd -T``) differs."""
    seen: dict[str, str] = {}
    for line in effective.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key.lower(), value.strip().lower())
    return [f"{k} {seen.get(k, '(unset)')} -> {v}" for k, v in want.items()
            if seen.get(k) != v]


def loopholes(effective: str, user: str, allow_from: list[str]) -> list[str]:
    """AllowUsers entries (from every file: sshd adds them up) that let ``user`` in from an
    address outside ``allow_from``: with one of them, ``--allow-from`` restricts nothing."""
    if not allow_from:
        return []
    ours = [ipaddress.ip_network(_cidr(c), strict=False) for c in allow_from]
    found = []
    for line in effective.splitlines():
        key, _, entry = line.strip().partition(" ")
        if key.lower() != "allowusers" or not entry:
            continue
        who, at, where = entry.partition("@")
        if not fnmatch.fnmatchcase(user, who):
            continue
        if at and _inside(where, ours):
            continue
        found.append(entry)
    return found


def _inside(where: str, ours: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        net = ipaddress.ip_network(where, strict=False)
    except ValueError:
        return False  # a host name pattern: not one of our ranges
    return any(net.version == o.version and net.subnet_of(o)  # type: ignore[arg-type]
               for o in ours)
