"""KS1xx: the ssh section of deploy.yml (Kamal defaults: user root, agent forwarding on)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kamal_secure.config.erb import is_dynamic
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Context, Rule, define, schema_check

if TYPE_CHECKING:
    from kamal_secure.facts.kamal_version import KamalVersion

FAMILY = "ssh"
KEYGEN_BLOCK = "kamal-secure keygen --write-config --user deploy"


def _ssh(ctx: Context) -> dict[str, object]:
    ssh = ctx.project.get("ssh")
    return ssh if isinstance(ssh, dict) else {}


def _no_block(ctx: Context) -> bool:
    """No ssh section at all: KS100 reports it once instead of KS101-KS104 each."""
    return ctx.project.get("ssh") is None


def no_agent_advice(kamal: KamalVersion) -> str:
    """How to stop agent forwarding on a Kamal that has no ssh.forward_agent."""
    from kamal_secure.facts.kamal_version import since

    return (f"{kamal.describe()} has no ssh.forward_agent (added in Kamal "
            f"{since('ssh.forward_agent')}; older Kamal rejects the key and SSHKit forwards "
            "the agent on every connection): run Kamal with no agent socket "
            "(`env -u SSH_AUTH_SOCK kamal deploy`) when the build does not need one, "
            "or upgrade Kamal")


def _assumed(kamal: KamalVersion) -> str:
    from kamal_secure.facts.kamal_version import since

    if not kamal.assumed:
        return ""
    return (f"; written for {kamal.describe()}: Kamal before {since('ssh.forward_agent')} "
            "rejects the key")


@define(
    "KS100", Severity.HIGH, "No ssh section: Kamal logs in as root with any key it finds",
    rationale="Without an ssh section Kamal uses its defaults: user root, every key in your "
    "agent and ~/.ssh, and your agent forwarded to every server (on Kamal before 2.12 always). "
    "One finding for the missing block; KS101-KS104 report its parts once an ssh section "
    "exists.",
    fix=f"Run `{KEYGEN_BLOCK}`: a dedicated deploy key and the whole ssh block "
    "(user, keys, keys_only, and forward_agent where your Kamal has it).",
    insecure="service: shop\nimage: acme/shop\nservers: [203.0.113.10]\n",
    secure="service: shop\nimage: acme/shop\nservers: [203.0.113.10]\nssh:\n  user: deploy\n"
    "  keys: [\"~/.ssh/kamal_deploy_key\"]\n  keys_only: true\n  forward_agent: false\n",
    family=FAMILY,
)
def no_block(rule: Rule, ctx: Context) -> Iterator[Finding]:
    if not _no_block(ctx):
        return
    where = ctx.at("ssh") if "ssh" in ctx.project.data else ctx.at()
    block = "user: deploy, keys: [\"~/.ssh/kamal_deploy_key\"], keys_only: true"
    fix = f"Run `{KEYGEN_BLOCK}`: a dedicated deploy key and `ssh: {{{block}"
    if ctx.kamal.accepts("ssh.forward_agent"):
        fix += f", forward_agent: false}}` in deploy.yml{_assumed(ctx.kamal)}."

    else:
        fix += f"}}` in deploy.yml. {no_agent_advice(ctx.kamal)}."
    yield rule.finding("no ssh section: Kamal logs in as root, offers every key it finds "
                       "and forwards your agent", where, fix=fix)


@define(
    "KS101", Severity.HIGH, "No dedicated deploy key: ssh.keys is not set",
    rationale="Without ssh.keys Kamal offers every key in your agent and ~/.ssh to every "
    "server: a personal key with access to everything ends up deploying.",
    fix="Run `kamal-secure keygen --write-config`, or set ssh.keys to your deploy key.",
    insecure="ssh:\n  user: deploy\n",
    secure="ssh:\n  user: deploy\n  keys: [\"~/.ssh/kamal_deploy_key\"]\n  keys_only: true\n",
    family=FAMILY,
)
def keys_missing(rule: Rule, ctx: Context) -> Iterator[Finding]:
    if _no_block(ctx):
        return
    keys = _ssh(ctx).get("keys")
    if not keys and not _ssh(ctx).get("key_data"):
        where = ctx.at("ssh") if ctx.project.get("ssh") is not None else ctx.at()
        yield rule.finding("ssh.keys is not set, so Kamal uses whatever keys it finds", where)


@define(
    "KS102", Severity.MEDIUM, "ssh.keys_only is not true",
    rationale="Without keys_only Kamal still offers the agent's other keys after the deploy "
    "key, so a server accepts whichever personal key happens to work.",
    fix="Set `keys_only: true` under ssh.",
    insecure="ssh:\n  keys: [\"~/.ssh/kamal_deploy_key\"]\n",
    secure="ssh:\n  keys: [\"~/.ssh/kamal_deploy_key\"]\n  keys_only: true\n",
    family=FAMILY,
)
def keys_only(rule: Rule, ctx: Context) -> Iterator[Finding]:
    if _no_block(ctx):
        return
    value = _ssh(ctx).get("keys_only")
    if value is True or is_dynamic(value):
        return
    where = ctx.at("ssh", "keys_only") if "keys_only" in _ssh(ctx) else ctx.at("ssh")
    yield rule.finding(f"ssh.keys_only is {_show(value)}; Kamal will also try agent keys", where)


@define(
    "KS103", Severity.HIGH, "Kamal logs in as root",
    rationale="Kamal's default ssh.user is root. A deploy key for root is a key to the whole "
    "machine. A deploy user still needs the docker group, and the docker group is "
    "root-equivalent (`docker run -v /:/host` reads and writes every file), so a non-root "
    "user alone does not contain a leaked key. What limits it: no root login at all "
    "(PermitRootLogin no, so root's keys are useless), the key restricted with `from=` to "
    "your deploy machines (`kamal-secure authorize --from CIDR`), short key lifetimes "
    "(`rotate-key`), and per-user audit trails of who logged in.",
    fix="Create a deploy user on each host (in the docker group, which is root-equivalent), "
    "set ssh.user to it, and turn root logins off (`kamal-secure harden`).",
    insecure="ssh:\n  user: root\n",
    secure="ssh:\n  user: deploy\n",
    family=FAMILY,
)
def root_user(rule: Rule, ctx: Context) -> Iterator[Finding]:
    ssh = _ssh(ctx)
    user = ssh.get("user")
    if _no_block(ctx) or is_dynamic(user):
        return
    if "user" not in ssh:
        yield rule.finding("ssh.user is not set: Kamal connects as root", ctx.at("ssh"))
    elif str(user) in ("root", "0"):
        yield rule.finding("ssh.user is root", ctx.at("ssh", "user"))


@define(
    "KS104", Severity.HIGH, "SSH agent forwarding is on",
    rationale="Kamal forwards your SSH agent unless forward_agent is false. Anyone with root on "
    "a server can then use your agent's keys to reach every other machine you can.",
    fix="Set `forward_agent: false` under ssh.",
    insecure="ssh:\n  user: deploy\n",
    secure="ssh:\n  user: deploy\n  forward_agent: false\n",
    family=FAMILY,
)
def forward_agent(rule: Rule, ctx: Context) -> Iterator[Finding]:
    ssh = _ssh(ctx)
    value = ssh.get("forward_agent")
    if _no_block(ctx) or value is False or is_dynamic(value):
        return
    if not ctx.kamal.accepts("ssh.forward_agent"):
        yield from _agent_on_old_kamal(rule, ctx)
    elif "forward_agent" in ssh:
        yield rule.finding(f"ssh.forward_agent is {_show(value)}", ctx.at("ssh", "forward_agent"),
                           fix=rule.fix[:-1] + _assumed(ctx.kamal) + ".")
    else:
        yield rule.finding("ssh.forward_agent is not set: Kamal forwards your agent",
                           ctx.at("ssh"), fix=rule.fix[:-1] + _assumed(ctx.kamal) + ".")


def _agent_on_old_kamal(rule: Rule, ctx: Context) -> Iterator[Finding]:
    """Kamal < 2.12: the key does not exist (a set key is KS003); only the agent socket counts."""
    if not ctx.agent_socket:
        return
    where = ctx.at("ssh", "forward_agent") if "forward_agent" in _ssh(ctx) else ctx.at("ssh")
    yield rule.finding(f"SSH_AUTH_SOCK is set and {ctx.kamal.describe()} forwards the agent "
                       "to every host", where, fix=no_agent_advice(ctx.kamal) + ".")


def _show(value: object) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


key_data = define(
    "KS105", Severity.CRITICAL, "Private key written inline in ssh.key_data",
    rationale="An inline PEM in deploy.yml is a private key in git, in every clone and CI log, "
    "and `kamal config` prints it. key_data entries should name secrets.",
    fix="Rotate the key, then list a secret name: `key_data: [SSH_PRIVATE_KEY]` with the key in "
    ".kamal/secrets (from a password manager), or use ssh.keys with a file path.",
    insecure="ssh:\n  key_data:\n    - \"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn...\\n"
    "-----END OPENSSH PRIVATE KEY-----\"\n",
    secure="ssh:\n  key_data:\n    - SSH_PRIVATE_KEY\n",
    family=FAMILY,
)(schema_check)

jump_user = define(
    "KS106", Severity.MEDIUM, "SSH jump host without a user: Kamal connects to it as root",
    rationale="`ssh.proxy: bastion.example.com` makes Kamal log in to the jump host as root "
    "(its default), so the bastion needs a root key: the most valuable host gets the weakest "
    "login.",
    fix="Name an unprivileged user: `proxy: deploy@bastion.example.com`.",
    insecure="ssh:\n  proxy: bastion.example.com\n",
    secure="ssh:\n  proxy: deploy@bastion.example.com\n",
    family=FAMILY,
)(schema_check)

ROOT_AT = re.compile(r"(^|[/\s=])root@|(^|\s)-l\s*root\b|\bUser=root\b")
ROOT_ELSEWHERE = (("builder", "remote"), ("ssh", "proxy"), ("ssh", "proxy_command"))


@define(
    "KS107", Severity.HIGH, "Root login outside ssh.user (remote builder, jump host)",
    rationale="ssh.user keeps Kamal off root on the servers, but `builder.remote: "
    "ssh://root@builder` and `ssh.proxy: root@bastion` still log in as root elsewhere: the "
    "deploy machine then holds a root key to the builder (which signs every image) or the "
    "bastion (which reaches every server).",
    fix="Use an unprivileged user in the docker group: `remote: ssh://deploy@builder`, "
    "`proxy: deploy@bastion`.",
    insecure="service: shop\nimage: acme/shop\nbuilder:\n  arch: amd64\n"
    "  remote: ssh://root@203.0.113.20\n",
    secure="service: shop\nimage: acme/shop\nbuilder:\n  arch: amd64\n"
    "  remote: ssh://deploy@203.0.113.20\n",
    family=FAMILY,
)
def root_elsewhere(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path in ROOT_ELSEWHERE:
        value = ctx.project.get(*path)
        if isinstance(value, str) and ROOT_AT.search(value):
            yield rule.finding(f"{'.'.join(path)} logs in as root", ctx.at(*path))


RULES: tuple[Rule, ...] = (no_block, keys_missing, keys_only, root_user, forward_agent,
                           key_data, jump_user, root_elsewhere)
