"""KS701-KS707, KS710: who may log in to each host, and how (live probe + sshd -T)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Rule
from kamal_secure.rules.host_base import SSHD_REFS, HostContext, host_rule, setting_is


def _both(ctx: HostContext, method: str, key: str) -> tuple[bool, bool]:
    return ctx.offers(method), setting_is(ctx, key, "yes")


def _login_finding(rule: Rule, ctx: HostContext, method: str, key: str) -> Iterator[Finding]:
    live, on_disk = _both(ctx, method, key)
    user = ctx.facts.user
    if live and on_disk:
        message = f"sshd offers {method} login to {user} and its configuration turns it on"
    elif live:
        message = (f"the running sshd offers {method} login to {user}, although the files on "
                   "disk say no: sshd was not reloaded since the change (the running daemon "
                   "is what counts)")
    elif on_disk:
        message = (f"the configuration turns {method} login on for {user} "
                   "(not offered by the running daemon yet: it will be after a reload)")
    else:
        return
    offered = ", ".join(ctx.facts.offered or ()) or "unknown"
    evidence = f"offered: {offered}; {ctx.evidence(key) or key + ' not read'}"
    yield rule.finding(message, ctx.where, evidence)


@host_rule(
    "KS701", Severity.CRITICAL, "sshd accepts password login",
    rationale="A host that takes passwords can be brute-forced by anyone who can reach port "
    "22. Cloud images often turn it back on with a drop-in (50-cloud-init.conf) that wins "
    "over the main file, because for sshd the first value read wins.",
    fix="Set `PasswordAuthentication no` in the first file sshd reads (a drop-in such as "
    "/etc/ssh/sshd_config.d/00-kamal-secure.conf), remove the cloud-init drop-in, and "
    "`systemctl reload ssh`.",
    insecure="# /etc/ssh/sshd_config.d/50-cloud-init.conf\nPasswordAuthentication yes\n",
    secure="# /etc/ssh/sshd_config.d/00-kamal-secure.conf\nPasswordAuthentication no\n",
    references=(*SSHD_REFS, "https://github.com/canonical/cloud-init/issues/5934"),
)
def password(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    yield from _login_finding(rule, ctx, "password", "passwordauthentication")


@host_rule(
    "KS702", Severity.CRITICAL, "sshd accepts keyboard-interactive login",
    rationale="With UsePAM yes, keyboard-interactive is password login under another name: "
    "it works even when PasswordAuthentication is no.",
    fix="Set `KbdInteractiveAuthentication no` (alias ChallengeResponseAuthentication) and "
    "reload sshd.",
    insecure="UsePAM yes\nKbdInteractiveAuthentication yes\n",
    secure="UsePAM yes\nKbdInteractiveAuthentication no\n",
    references=SSHD_REFS,
)
def keyboard_interactive(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    yield from _login_finding(rule, ctx, "keyboard-interactive", "kbdinteractiveauthentication")


@host_rule(
    "KS703", Severity.CRITICAL, "sshd permits empty passwords",
    rationale="An account without a password can then log in with none; the live probe "
    "also catches a daemon that accepts the `none` method outright.",
    fix="Set `PermitEmptyPasswords no`.",
    insecure="PermitEmptyPasswords yes\n", secure="PermitEmptyPasswords no\n",
    references=SSHD_REFS,
)
def empty_passwords(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.facts.offered == ("none",):
        yield rule.finding(f"sshd let {ctx.facts.user} in without any authentication",
                           ctx.where, "auth_none succeeded")
    if setting_is(ctx, "permitemptypasswords", "yes"):
        yield rule.finding("PermitEmptyPasswords is yes", ctx.where,
                           ctx.evidence("permitemptypasswords"))


@host_rule(
    "KS704", Severity.HIGH, "sshd permits root login",
    rationale="Root over SSH turns any leaked key or password into full control. "
    "prohibit-password is only acceptable when Kamal itself logs in as root.",
    fix="Set `PermitRootLogin no` (use a deploy user in the docker group), or "
    "`prohibit-password` while Kamal's ssh.user is still root.",
    insecure="PermitRootLogin yes\n", secure="PermitRootLogin no\n",
    references=SSHD_REFS,
)
def root_login(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    value = ctx.sshd.flag("permitrootlogin") if ctx.sshd is not None else None
    if value is None or value == "no":
        return
    keys_only = value in ("prohibit-password", "without-password", "forced-commands-only")
    if keys_only and ctx.facts.user == "root":
        return
    detail = "with passwords too" if value == "yes" else "with keys"
    yield rule.finding(f"PermitRootLogin is {value}: root may log in {detail}", ctx.where,
                       ctx.evidence("permitrootlogin"))


@host_rule(
    "KS705", Severity.HIGH, "sshd public key authentication is off",
    rationale="Kamal deploys with keys; without them the host only takes weaker methods.",
    fix="Set `PubkeyAuthentication yes`.",
    insecure="PubkeyAuthentication no\n", secure="PubkeyAuthentication yes\n",
    references=SSHD_REFS,
)
def pubkey(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if setting_is(ctx, "pubkeyauthentication", "no"):
        yield rule.finding("PubkeyAuthentication is no", ctx.where,
                           ctx.evidence("pubkeyauthentication"))
    elif ctx.facts.offered is not None and "publickey" not in ctx.facts.offered:
        yield rule.finding(f"the running sshd does not offer publickey to {ctx.facts.user}",
                           ctx.where, f"offered: {', '.join(ctx.facts.offered) or 'none'}")


@host_rule(
    "KS706", Severity.HIGH, "AuthenticationMethods allows a login without a key",
    rationale="Each comma-separated list in AuthenticationMethods is one way in; a list "
    "without publickey lets a password alone through.",
    fix="Set `AuthenticationMethods publickey` (or leave `any` with password and "
    "keyboard-interactive off).",
    insecure="AuthenticationMethods publickey password\n",
    secure="AuthenticationMethods publickey\n",
    references=SSHD_REFS,
)
def auth_methods(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    value = ctx.sshd.get("authenticationmethods") if ctx.sshd is not None else None
    if value is None or value.lower() == "any":
        return
    weak = [m for m in value.split() if "publickey" not in m.split(",")]
    if weak:
        yield rule.finding(f"AuthenticationMethods lets {' / '.join(weak)} in without a key",
                           ctx.where, ctx.evidence("authenticationmethods"))


@host_rule(
    "KS707", Severity.HIGH, "sshd host-based authentication is on",
    rationale="Host-based authentication trusts other machines' word about who a user is.",
    fix="Set `HostbasedAuthentication no`.",
    insecure="HostbasedAuthentication yes\n", secure="HostbasedAuthentication no\n",
    references=SSHD_REFS,
)
def hostbased(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if setting_is(ctx, "hostbasedauthentication", "yes") or ctx.offers("hostbased"):
        yield rule.finding("HostbasedAuthentication is on", ctx.where,
                           ctx.evidence("hostbasedauthentication"))


@host_rule(
    "KS710", Severity.MEDIUM, "sshd logins are not restricted to named users",
    rationale="Without AllowUsers or AllowGroups every account with a shell and a key or "
    "password may log in; listing the deploy user limits the door to who needs it.",
    fix="Add `AllowUsers deploy` (plus your admin accounts) or `AllowGroups ssh-users`.",
    insecure="# no AllowUsers / AllowGroups\n", secure="AllowUsers deploy\n",
    references=SSHD_REFS,
)
def allow_users(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.sshd is None:
        return
    users = [u for line in ctx.sshd.all("allowusers") for u in line.split()]
    groups = ctx.sshd.all("allowgroups")
    if not users and not groups:
        yield rule.finding("neither AllowUsers nor AllowGroups is set", ctx.where)
    elif users and not groups and not _user_listed(ctx.facts.user, users):
        yield rule.finding(f"AllowUsers does not list {ctx.facts.user}: Kamal will be refused",
                           ctx.where, f"allowusers {' '.join(users)}")


def _user_listed(user: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(user, p.partition("@")[0]) for p in patterns)


RULES: tuple[Rule, ...] = (password, keyboard_interactive, empty_passwords, root_login, pubkey,
                           auth_methods, hostbased, allow_users)
