"""The sshd baseline as a drop-in that wins, applied without locking anyone out.

``/etc/ssh/sshd_config.d/00-kamal-secure.conf``: 00- sorts before cloud-init's 50- drop-in
and sshd keeps the first value it reads. Remote steps are constant scripts run as root
(directly or with ``sudo -n``); values reach them only as arguments or on stdin.
"""

from __future__ import annotations

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

READ = f'if [ -f {DROPIN} ]; then echo present; cat {DROPIN}; else echo absent; fi'
INCLUDED = ("grep -Eq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\\.d/\\*\\.conf' "
            "/etc/ssh/sshd_config")
REMOVE = f"rm -f {DROPIN}"
VALIDATE = "sshd -t 2>&1"
EFFECTIVE = 'sshd -T -C "user=$1,host=$2,addr=$3" 2>&1'
RELOAD = """p=$(sshd -T 2>/dev/null | awk '$1 == "pidfile" {print $2}')
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
  systemctl reload ssh
elif command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet sshd 2>/dev/null; then
  systemctl reload sshd
elif [ -n "$p" ] && [ -f "$p" ]; then
  kill -HUP "$(cat "$p")"
else
  echo "cannot tell how to reload sshd (no systemd unit, no PidFile)"; exit 4
fi
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

    def expected(self) -> dict[str, str]:
        """What ``sshd -T`` must report afterwards (lowercase keys)."""
        want = {k.lower(): v.lower() for k, v in self.settings}
        want["permitrootlogin"] = {"prohibit-password": "without-password"}.get(
            want["permitrootlogin"], want["permitrootlogin"])
        return want


def baseline(user: str, allow_from: list[str], extra_users: list[str],
             thresholds: dict[str, int], tcp_forwarding: str = "no") -> Baseline:
    allow = [user] if not allow_from else [f"{user}@{_cidr(c)}" for c in allow_from]
    allow.extend(extra_users)
    settings = (
        ("PasswordAuthentication", "no"), ("KbdInteractiveAuthentication", "no"),
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
