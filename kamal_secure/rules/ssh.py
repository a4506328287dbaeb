"""KS1xx: the ssh section of deploy.yml (Kamal defaults: user root, agent forwarding on)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from kamal_secure.config.erb import is_dynamic
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Context, Rule, define, schema_check

FAMILY = "ssh"


def _ssh(ctx: Context) -> dict[str, object]:
    ssh = ctx.project.get("ssh")
    return ssh if isinstance(ssh, dict) else {}


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
    value = _ssh(ctx).get("keys_only")
    if value is True or is_dynamic(value):
        return
    where = ctx.at("ssh", "keys_only") if "keys_only" in _ssh(ctx) else ctx.at("ssh")
    yield rule.finding(f"ssh.keys_only is {_show(value)}; Kamal will also try agent keys", where)


@define(
    "KS103", Severity.HIGH, "Kamal logs in as root",
    rationale="Kamal's default ssh.user is root. A deploy key for root is a key to the whole "
    "machine; a dedicated user in the docker group limits what a leaked key can do.",
    fix="Create a deploy user on each host (in the docker group) and set ssh.user to it.",
    insecure="ssh:\n  user: root\n",
    secure="ssh:\n  user: deploy\n",
    family=FAMILY,
)
def root_user(rule: Rule, ctx: Context) -> Iterator[Finding]:
    ssh = _ssh(ctx)
    user = ssh.get("user")
    if is_dynamic(user):
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
    if value is False or is_dynamic(value):
        return
    if "forward_agent" in ssh:
        yield rule.finding(f"ssh.forward_agent is {_show(value)}", ctx.at("ssh", "forward_agent"))
    else:
        yield rule.finding("ssh.forward_agent is not set: Kamal forwards your agent",
                           ctx.at("ssh"))


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


RULES: tuple[Rule, ...] = (keys_missing, keys_only, root_user, forward_agent, key_data, jump_user,
                           root_elsewhere)
