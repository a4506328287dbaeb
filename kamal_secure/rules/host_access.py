"""KS718-KS722: the deploy user's authorized_keys and how far the facts can be trusted.
KS801-KS804: a host that could not be checked (reported as problems, exit 3)."""

from __future__ import annotations

from collections.abc import Iterator

from kamal_secure.facts.host import AuthorizedKey, HostFacts, Unchecked
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Rule
from kamal_secure.rules.host_base import FAMILY, SSHD_REFS, HostContext, host_rule

AK_EXAMPLE = "ssh-ed25519 AAAAC3Nza... kamal-deploy:shop\n"
AK_FROM = 'from="203.0.113.0/24",no-pty ssh-ed25519 AAAAC3Nza... kamal-deploy:shop\n'


def _deploy_entries(ctx: HostContext) -> list[AuthorizedKey]:
    wanted = set(ctx.facts.deploy_fingerprints)
    return [k for k in ctx.facts.authorized_keys or () if k.fingerprint in wanted]


@host_rule(
    "KS718", Severity.MEDIUM, "The deploy key is not in the deploy user's authorized_keys",
    rationale="Kamal will log in with the key named in ssh.keys; if the host does not list it, "
    "the deploy fails half-way or falls back to another key. Not in certificate mode (a CA "
    "named): there the certificate logs in, and KS726 wants the key out of authorized_keys.",
    fix="Run `kamal-secure authorize` (or append the .pub of your ssh.keys key to "
    "~deploy/.ssh/authorized_keys).",
    insecure="# authorized_keys without the deploy key\n", secure=AK_EXAMPLE,
)
def deploy_key_present(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.ca is not None or ctx.facts.authorized_keys is None \
            or not ctx.facts.deploy_fingerprints:
        return
    if not _deploy_entries(ctx):
        yield rule.finding(f"none of ssh.keys is authorized for {ctx.facts.user}", ctx.where,
                           ", ".join(ctx.facts.deploy_fingerprints))


@host_rule(
    "KS719", Severity.INFO, "Other keys may log in as the deploy user",
    rationale="Every other key in authorized_keys can deploy too; list them so that stale "
    "ones get removed.",
    fix="Remove keys nobody uses from the deploy user's authorized_keys.",
    insecure=AK_EXAMPLE + "ssh-rsa AAAAB3Nza... laptop-2019\n", secure=AK_EXAMPLE,
)
def other_keys(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    wanted = set(ctx.facts.deploy_fingerprints)
    for key in ctx.facts.authorized_keys or ():
        if key.fingerprint not in wanted:
            yield rule.finding(f"{key.key_type} key {key.comment or '(no comment)'} is also "
                               f"authorized ({key.source_file})", ctx.where, key.fingerprint)


@host_rule(
    "KS720", Severity.LOW, "The deploy key is not restricted to your addresses",
    rationale='A from="..." option limits where the deploy key works: a stolen key is then '
    "useless from elsewhere. Reported as info when present, low when absent.",
    fix='When the key has no from= option: `kamal-secure authorize --from CIDR`, or prefix it '
    'in authorized_keys with from="<your CI and office ranges>".',
    insecure=AK_EXAMPLE, secure=AK_FROM,
    also=((Severity.INFO, "the key is restricted: the restriction is shown"),),
)
def from_restriction(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    for key in _deploy_entries(ctx):
        allowed = key.from_restriction
        if allowed is not None:
            yield rule.finding(f"the deploy key is restricted to from={allowed}", ctx.where,
                               key.fingerprint, severity=Severity.INFO,
                               fix="Nothing to add; keep the from= list to your current CI and "
                               "office ranges.")
        else:
            yield rule.finding("the deploy key works from any address", ctx.where,
                               key.fingerprint,
                               fix="Restrict it: `kamal-secure authorize --from CIDR` (your CI "
                               "and office ranges) writes from=\"...\" before the key.")


@host_rule(
    "KS721", Severity.HIGH, "The running sshd differs from its configuration files",
    rationale="sshd -T reads the files on disk; the live probe shows what the running "
    "daemon does. When they disagree, sshd was not reloaded since the last change.",
    fix="Check the files, then `systemctl reload ssh` and scan again.",
    insecure="# file says PasswordAuthentication no, daemon still offers password\n",
    secure="# files and the running daemon agree\n",
    references=SSHD_REFS,
)
def disagreement(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.facts.offered is None or ctx.sshd is None:
        return
    for method, key in (("password", "passwordauthentication"),
                        ("keyboard-interactive", "kbdinteractiveauthentication"),
                        ("publickey", "pubkeyauthentication")):
        live = method in ctx.facts.offered
        on_disk = ctx.sshd.flag(key)
        if on_disk in ("yes", "no") and live != (on_disk == "yes"):
            yield rule.finding(
                f"the running daemon {'offers' if live else 'does not offer'} {method}; "
                f"the files say {key} {on_disk}", ctx.where,
                f"offered: {', '.join(ctx.facts.offered)}; {ctx.evidence(key)}")


@host_rule(
    "KS722", Severity.INFO, "Effective sshd settings were derived, not read",
    rationale="sshd -T could not run (no root, no sudo -n, no usable sshd binary), so the "
    "files were parsed with sshd's rules (Include in lexical order, first value wins, Match "
    "for this user, address and groups). When any file that counts cannot be read (the main "
    "sshd_config, a 0600 drop-in such as cloud-init's, an Include directory) or a Match block "
    "cannot be evaluated, the effective settings are unknown, not the values of the files "
    "that could be read: high (policy `hosts.unknown_severity`). Password, "
    "keyboard-interactive and AuthenticationMethods are then decided by the live probe; "
    "PermitRootLogin cannot be probed, so the verdict is incomplete (exit 3).",
    fix="Let the deploy user run `sudo -n /usr/sbin/sshd -T` or make sshd_config and its "
    "drop-ins readable.",
    insecure="# /etc/ssh/sshd_config.d/50-cloud-init.conf mode 0600 and no sudo\n",
    secure="# sudo -n sshd -T works\n",
    also=((Severity.HIGH, "the settings could not be established (unknown)"),
          *((level, "unknown settings, at the policy's hosts.unknown_severity")
            for level in (Severity.CRITICAL, Severity.MEDIUM, Severity.LOW))),
)
def derived(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    notes = "; ".join(ctx.facts.notes) or None
    if ctx.sshd is not None and ctx.sshd.derived:
        yield rule.finding(ctx.sshd.source, ctx.where, notes)
    elif ctx.sshd is None:
        yield rule.finding("the effective sshd settings could neither be read nor derived "
                           "(unknown, not assumed): only the live probe was checked", ctx.where,
                           notes, severity=Severity.parse(ctx.policy.unknown_severity))


# The settings the gate relies on, and whether the live probe (methods offered to the deploy
# user) can stand in for them when the effective configuration is unknown.
RELIED_ON = (("PasswordAuthentication", True), ("KbdInteractiveAuthentication", True),
             ("AuthenticationMethods", True), ("PermitRootLogin", False))


def undecided(facts: HostFacts) -> list[str]:
    """The relied-on settings that neither sshd nor the live probe established (exit 3)."""
    if facts.sshd is not None:
        return []
    return [name for name, probed in RELIED_ON if not (probed and facts.offered is not None)]


def _problem_rule(id_: str, title: str, rationale: str, fix: str, insecure: str,
                  secure: str) -> Rule:
    note = " Reported as a problem, not a finding: the verdict is exit 3 whatever the threshold."
    return Rule(id_, Severity.HIGH, title, rationale + note, fix, insecure, secure, FAMILY, None,
                kind="raised")


PINNED = "# .kamal/known_hosts\n203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA...\n"
PROBLEM_RULES: tuple[Rule, ...] = (
    _problem_rule("KS801", "Host unreachable or not answering",
                  "A host that cannot be checked cannot be trusted; the gate refuses.",
                  "Check the address, port, jump host and firewall; scan again.",
                  "# servers: [203.0.113.99]  (nothing answers SSH there)\n",
                  "# every listed host answers SSH within the timeout\n"),
    _problem_rule("KS802", "Unknown host key",
                  "Accepting a key never seen before is how a man in the middle gets in.",
                  "Compare the printed fingerprint with `ssh-keygen -lf "
                  "/etc/ssh/ssh_host_ed25519_key.pub` on the host's console, then add the "
                  "printed line to .kamal/known_hosts.",
                  "# no known_hosts entry for 203.0.113.10\n", PINNED),
    _problem_rule("KS803", "Host key changed or revoked",
                  "The host presents a different key than the one pinned (or one marked "
                  "@revoked): either it was rebuilt or someone is in the middle.",
                  "Find out why. Only when the change is expected, replace the old line in "
                  "known_hosts.",
                  "# known_hosts pins a key the host no longer presents\n", PINNED),
    _problem_rule("KS804", "Login as the deploy user failed",
                  "The host was reached and verified but ssh.keys did not log in, so its "
                  "effective settings could not be read.",
                  "Authorize the deploy key for ssh.user on that host.",
                  "# the deploy key is not in ~deploy/.ssh/authorized_keys\n",
                  "ssh-ed25519 AAAAC3Nza... kamal-deploy:shop\n"),
)

UNCHECKED_RULES: dict[Unchecked, Rule] = dict(zip(
    ("unreachable", "host_key_unknown", "host_key_changed", "login_failed"), PROBLEM_RULES,
    strict=True))


def unchecked_rule(reason: Unchecked) -> Rule:
    """The rule for a host the SSH layer could not check, by its reason."""
    return UNCHECKED_RULES[reason]


RULES: tuple[Rule, ...] = (deploy_key_present, other_keys, from_restriction, disagreement,
                           derived, *PROBLEM_RULES)
