"""KS708, KS709, KS711-KS717: algorithms, host keys, limits, forwarding and logging."""

from __future__ import annotations

from collections.abc import Iterator

from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Rule
from kamal_secure.rules.host_base import (
    SSHD_REFS,
    HostContext,
    host_rule,
    setting_not,
)

WEAK_CIPHER_PARTS = ("cbc", "3des", "arcfour", "blowfish", "cast128", "rc4")
WEAK_MAC_PARTS = ("sha1", "md5", "umac-64", "-96")


def _weak_algorithms(ctx: HostContext) -> Iterator[tuple[str, str]]:
    if ctx.sshd is None:
        return
    for name in (ctx.sshd.get("ciphers") or "").split(","):
        if name and any(part in name.lower() for part in WEAK_CIPHER_PARTS):
            yield "ciphers", name
    for name in (ctx.sshd.get("macs") or "").split(","):
        if name and any(part in name.lower() for part in WEAK_MAC_PARTS):
            yield "macs", name
    for name in (ctx.sshd.get("kexalgorithms") or "").split(","):
        if name.lower().endswith("-sha1"):
            yield "kexalgorithms", name


@host_rule(
    "KS708", Severity.HIGH, "sshd offers weak ciphers, MACs or key exchange",
    rationale="Follows Mozilla's OpenSSH guidelines (modern): CBC ciphers, 3DES, arcfour and "
    "blowfish, MACs with SHA-1, MD5, 64-bit or truncated (-96) tags, and SHA-1 key exchange "
    "have known attacks or margins too thin to keep. OpenSSH's default hmac-sha2-256/512 and "
    "umac-128 are in Mozilla's list and are not reported (ssh-audit only warns that they are "
    "not encrypt-then-MAC); `harden` still writes only the -etm variants.",
    fix="Set Ciphers, MACs and KexAlgorithms to modern lists only. Keep an ECDH key exchange "
    "(ecdh-sha2-nistp256) in the list: Kamal's net-ssh without the x25519 gem (Debian's "
    "Kamal) cannot do curve25519 or sntrup and would be locked out. sntrup761x25519 needs "
    "OpenSSH 8.5 or later (`harden` leaves out what a host's sshd does not know).",
    insecure="Ciphers aes128-cbc,aes256-ctr\nMACs hmac-sha1\n",
    secure="Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr\n"
    "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com\n"
    "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,ecdh-sha2-nistp256\n",
    references=(*SSHD_REFS, "https://infosec.mozilla.org/guidelines/openssh", "ssh-audit"),
)
def algorithms(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    by_kind: dict[str, list[str]] = {}
    for kind, name in _weak_algorithms(ctx):
        by_kind.setdefault(kind, []).append(name)
    for kind, names in by_kind.items():
        yield rule.finding(f"{kind} includes weak algorithms: {', '.join(names)}", ctx.where,
                           ctx.evidence(kind))


@host_rule(
    "KS709", Severity.MEDIUM, "Weak sshd host key",
    rationale="DSA keys and RSA keys under 3072 bits are below current baselines; clients "
    "that accept them can be impersonated more cheaply.",
    fix="Generate an ed25519 host key (`ssh-keygen -A`), list it first with HostKey, drop "
    "DSA and short RSA keys, and re-pin the fingerprint with your clients.",
    insecure="HostKey /etc/ssh/ssh_host_dsa_key\n",
    secure="HostKey /etc/ssh/ssh_host_ed25519_key\n",
    references=SSHD_REFS,
)
def host_key(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    key = ctx.facts.host_key
    if key is not None and ("dss" in key.key_type or (key.key_type == "ssh-rsa"
                                                      and key.bits < 3072)):
        yield rule.finding(f"the host presents a {key.key_type} key of {key.bits} bits",
                           ctx.where, key.fingerprint)
    if ctx.sshd is not None and not ctx.sshd.source.startswith("sshd -T -h"):
        for path in ctx.sshd.all("hostkey"):
            if "dsa_key" in path and "ecdsa" not in path:
                yield rule.finding(f"sshd loads a DSA host key ({path})", ctx.where)


@host_rule(
    "KS711", Severity.MEDIUM, "sshd MaxAuthTries is too high",
    rationale="Each connection may try this many credentials; a low number slows guessing.",
    fix="Set MaxAuthTries to the policy's limit or lower (default 4, from .kamal/secure.yml "
    "hosts.max_auth_tries).",
    insecure="MaxAuthTries 6\n", secure="MaxAuthTries 3\n",
    references=SSHD_REFS,
)
def max_auth_tries(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    value = ctx.sshd.number("maxauthtries") if ctx.sshd is not None else None
    if value is not None and value > ctx.policy.max_auth_tries:
        limit = ctx.policy.max_auth_tries
        yield rule.finding(f"MaxAuthTries is {value} (policy: at most {limit})", ctx.where,
                           ctx.evidence("maxauthtries"),
                           fix=f"Set `MaxAuthTries {limit}` (or lower; the limit is "
                           ".kamal/secure.yml hosts.max_auth_tries).")


FORWARDING = (("permituserenvironment", "no"), ("x11forwarding", "no"),
              ("allowagentforwarding", "no"), ("permittunnel", "no"), ("gatewayports", "no"))


@host_rule(
    "KS712", Severity.MEDIUM, "sshd allows forwarding or user environments",
    rationale="Agent, X11 and tunnel forwarding and user-set environments give a logged-in "
    "account ways to reach further or change how sshd runs its commands.",
    fix="Set PermitUserEnvironment, X11Forwarding, AllowAgentForwarding, PermitTunnel and "
    "GatewayPorts to no.",
    insecure="X11Forwarding yes\nAllowAgentForwarding yes\n",
    secure="X11Forwarding no\nAllowAgentForwarding no\nPermitTunnel no\nGatewayPorts no\n"
    "PermitUserEnvironment no\n",
    references=SSHD_REFS,
)
def forwarding(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    for key, good in FORWARDING:
        if setting_not(ctx, key, good):
            yield rule.finding(f"{key} is not {good}", ctx.where, ctx.evidence(key))


@host_rule(
    "KS713", Severity.MEDIUM, "sshd allows remote TCP forwarding",
    rationale="Remote forwarding lets a logged-in account open listening ports through sshd. "
    "One Kamal setup needs it: a local registry (`registry.server: localhost:PORT`) is "
    "reached from every host through SSH remote port forwarding, so for such a config "
    "`AllowTcpForwarding remote` is what Kamal needs (and `no` or `local` breaks the deploy).",
    fix="Set `AllowTcpForwarding no` (or `local`; allowed values come from the policy); with "
    "a local registry set `remote` (`kamal-secure harden` writes the right one).",
    insecure="AllowTcpForwarding yes\n", secure="AllowTcpForwarding no\n",
    references=SSHD_REFS,
    also=((Severity.INFO, "a local registry: `remote` is what Kamal needs, said so"),
          (Severity.LOW, "a local registry and `no`/`local`: the deploy would break")),
)
def tcp_forwarding(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    value = ctx.sshd.flag("allowtcpforwarding") if ctx.sshd is not None else None
    if ctx.local_registry:
        yield from _local_registry_forwarding(rule, ctx, value)
        return
    allowed = (value.lower() for value in ctx.policy.tcp_forwarding)
    if setting_not(ctx, "allowtcpforwarding", *allowed):
        yield rule.finding("AllowTcpForwarding is "
                           f"{ctx.sshd.get('allowtcpforwarding') if ctx.sshd else '?'}",
                           ctx.where, ctx.evidence("allowtcpforwarding"))


def _local_registry_forwarding(rule: Rule, ctx: HostContext,
                               value: str | None) -> Iterator[Finding]:
    """Kamal's local registry needs remote forwarding: `remote` is right, said so."""
    why = (f"registry.server {ctx.local_registry} is Kamal's local registry, reached from "
           "this host through SSH remote forwarding")
    fix = "Set `AllowTcpForwarding remote` (`kamal-secure harden` does)."
    evidence = ctx.evidence("allowtcpforwarding")
    if value is None:
        return
    if value == "remote":
        yield rule.finding(f"AllowTcpForwarding remote is allowed: {why}", ctx.where, evidence,
                           severity=Severity.INFO, fix="")
    elif value in ("no", "local"):
        yield rule.finding(f"AllowTcpForwarding {value} breaks this deploy: {why}", ctx.where,
                           evidence, severity=Severity.LOW, fix=fix)
    else:
        yield rule.finding(f"AllowTcpForwarding is {value}; {why}, so only `remote` is needed",
                           ctx.where, evidence, fix=fix)


@host_rule(
    "KS714", Severity.MEDIUM, "sshd IgnoreRhosts or StrictModes is off",
    rationale="rhosts files and loosely permissioned home directories let other users or "
    "hosts vouch for a login.",
    fix="Set `IgnoreRhosts yes` and `StrictModes yes`.",
    insecure="StrictModes no\n", secure="IgnoreRhosts yes\nStrictModes yes\n",
    references=SSHD_REFS,
)
def rhosts_modes(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    for key in ("ignorerhosts", "strictmodes"):
        if setting_not(ctx, key, "yes"):
            yield rule.finding(f"{key} is not yes", ctx.where, ctx.evidence(key))


@host_rule(
    "KS715", Severity.LOW, "sshd LoginGraceTime is long",
    rationale="Unauthenticated connections hold a slot this long; long grace times make "
    "connection exhaustion cheap.",
    fix="Set `LoginGraceTime 30` (limit: .kamal/secure.yml hosts.login_grace_time).",
    insecure="LoginGraceTime 120\n", secure="LoginGraceTime 30\n",
    references=SSHD_REFS,
)
def grace_time(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    value = ctx.sshd.number("logingracetime") if ctx.sshd is not None else None
    limit = ctx.policy.login_grace_time
    if value is not None and (value == 0 or value > limit):
        yield rule.finding(f"LoginGraceTime is {value}s (policy: 1..{limit})", ctx.where,
                           ctx.evidence("logingracetime"))


@host_rule(
    "KS716", Severity.LOW, "sshd never drops idle sessions",
    rationale="ClientAliveInterval and ClientAliveCountMax end dead or abandoned sessions.",
    fix="Set `ClientAliveInterval 300` and `ClientAliveCountMax 3` or lower.",
    insecure="ClientAliveInterval 0\n", secure="ClientAliveInterval 300\nClientAliveCountMax 2\n",
    references=SSHD_REFS,
)
def client_alive(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.sshd is None:
        return
    interval = ctx.sshd.number("clientaliveinterval")
    count = ctx.sshd.number("clientalivecountmax")
    if interval is not None and not 0 < interval <= ctx.policy.client_alive_interval:
        yield rule.finding(f"ClientAliveInterval is {interval}", ctx.where,
                           ctx.evidence("clientaliveinterval"))
    if count is not None and count > ctx.policy.client_alive_count_max:
        yield rule.finding(f"ClientAliveCountMax is {count}", ctx.where,
                           ctx.evidence("clientalivecountmax"))


@host_rule(
    "KS717", Severity.LOW, "sshd LogLevel loses login records",
    rationale="VERBOSE (or at least INFO) records which key logged in; QUIET and ERROR "
    "leave nothing to investigate with, DEBUG may log private data.",
    fix="Set `LogLevel VERBOSE`.",
    insecure="LogLevel QUIET\n", secure="LogLevel VERBOSE\n",
    references=SSHD_REFS,
)
def log_level(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    value = ctx.sshd.get("loglevel") if ctx.sshd is not None else None
    if value is not None and value.upper() not in {v.upper() for v in ctx.policy.log_levels}:
        yield rule.finding(f"LogLevel is {value}", ctx.where, ctx.evidence("loglevel"))


@host_rule(
    "KS723", Severity.LOW, "sshd differs from the project's policy (Banner, PrintLastLog, Port)",
    rationale="Baselines disagree on a login banner, PrintLastLog and moving sshd off port 22, "
    "so they are project choices: set them under hosts: in .kamal/secure.yml and every host "
    "is held to them. Nothing is checked while they are `any` / 0.",
    fix="Bring the host in line, or change hosts.banner / print_last_log / port in "
    ".kamal/secure.yml.",
    insecure="# .kamal/secure.yml hosts: {banner: required}\nBanner none\n",
    secure="# .kamal/secure.yml hosts: {banner: required}\nBanner /etc/issue.net\n",
    references=SSHD_REFS,
)
def policy_choices(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.sshd is None:
        return
    policy = ctx.policy
    banner = (ctx.sshd.get("banner") or "none").lower()
    if policy.banner == "required" and banner == "none":
        yield rule.finding("no login Banner (policy: required)", ctx.where, ctx.evidence("banner"))
    elif policy.banner == "none" and banner != "none":
        yield rule.finding("a login Banner is set (policy: none)", ctx.where,
                           ctx.evidence("banner"))
    last_log = ctx.sshd.flag("printlastlog")
    if policy.print_last_log in ("yes", "no") and last_log not in (None, policy.print_last_log):
        yield rule.finding(f"PrintLastLog is {last_log} (policy: {policy.print_last_log})",
                           ctx.where, ctx.evidence("printlastlog"))
    ports = {p.split()[0] for p in ctx.sshd.all("port")}
    if policy.port and ports and str(policy.port) not in ports:
        yield rule.finding(f"sshd listens on port {', '.join(sorted(ports))} "
                           f"(policy: {policy.port})", ctx.where, ctx.evidence("port"))


RULES: tuple[Rule, ...] = (algorithms, host_key, max_auth_tries, forwarding, tcp_forwarding,
                           rhosts_modes, grace_time, client_alive, log_level, policy_choices)
