"""KS2xx: secrets written where they do not belong. Values appear only through ``redact``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kamal_secure.config.yamlsafe import Path
from kamal_secure.report.model import Finding, Location, Severity, redact
from kamal_secure.rules.base import (
    Context,
    Rule,
    define,
    filled_schema_check,
    schema_check,
    yaml_path,
)
from kamal_secure.rules.secretscan import is_reference, looks_secret

FAMILY = "secrets"
HEAD = "service: shop\nimage: acme/shop\n"
SPECIAL = ("clear", "secret", "tags")
FAKE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz9Xq2LkW"  # an example, not a real secret

registry_password = define(
    "KS201", Severity.CRITICAL, "Registry password written in deploy.yml",
    rationale="A string `registry.password` is a literal token in git and in every clone: "
    "whoever reads the repository can push images that your servers will run.",
    fix="Revoke the token, then write `password: [KAMAL_REGISTRY_PASSWORD]` and set it in "
    ".kamal/secrets from your password manager.",
    insecure=HEAD + "registry:\n  username: acme\n  password: " + FAKE + "\n",
    secure=HEAD + "registry:\n  username: acme\n  password:\n    - KAMAL_REGISTRY_PASSWORD\n",
    family=FAMILY,
)(schema_check)

registry_username = define(
    "KS202", Severity.LOW, "Registry username written in deploy.yml",
    rationale="Not a secret on its own, but half of the credential, and it tells an attacker "
    "which account to phish. A secret reference keeps both halves in one place.",
    fix="Write `username: [KAMAL_REGISTRY_USERNAME]` and set it in .kamal/secrets.",
    insecure=HEAD + "registry:\n  username: acme\n  password: [KAMAL_REGISTRY_PASSWORD]\n",
    secure=HEAD + "registry:\n  username: [KAMAL_REGISTRY_USERNAME]\n"
    "  password: [KAMAL_REGISTRY_PASSWORD]\n",
    family=FAMILY,
)(schema_check)


def _env_entries(env: Any, path: Path) -> Iterator[tuple[Path, str, Any]]:
    if not isinstance(env, dict):
        return
    if not any(key in env for key in SPECIAL):
        for key, value in env.items():
            yield (*path, key), key, value
        return
    yield from _env_entries(_flat(env.get("clear")), (*path, "clear"))
    tags = env.get("tags")
    if isinstance(tags, dict):
        for tag, inner in tags.items():
            yield from _env_entries(inner, (*path, "tags", tag))


def _flat(clear: Any) -> dict[str, Any]:
    return clear if isinstance(clear, dict) else {}


def env_entries(ctx: Context) -> Iterator[tuple[Path, str, Any]]:
    """Every clear env value: top level, tags, roles and accessories."""
    yield from _env_entries(ctx.project.get("env"), ("env",))
    for section in ("servers", "accessories"):
        groups = ctx.project.get(section)
        if isinstance(groups, dict):
            for name, item in groups.items():
                if isinstance(item, dict):
                    yield from _env_entries(item.get("env"), (section, name, "env"))


def _finding(rule: Rule, ctx: Context, path: Path, why: str, value: Any) -> Finding:
    return rule.finding(f"{yaml_path(path)}: {why}", ctx.at(*path), evidence=redact(str(value)))


@define(
    "KS203", Severity.HIGH, "Secret in clear env",
    rationale="`env` and `env.clear` values are written in deploy.yml (git) and shown by "
    "`kamal config` and `docker inspect`. Only `env.secret` names are resolved from the "
    "secrets files.",
    fix="Move it: list the name under `env.secret` and set the value in .kamal/secrets.",
    insecure=HEAD + "env:\n  clear:\n    AWS_SECRET_ACCESS_KEY: " + FAKE + "\n",
    secure=HEAD + "env:\n  secret:\n    - AWS_SECRET_ACCESS_KEY\n",
    family=FAMILY,
)
def clear_env(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, key, value in env_entries(ctx):
        why = looks_secret(key, value)
        if why:
            yield _finding(rule, ctx, path, f"looks like a secret ({why})", value)


@define(
    "KS204", Severity.HIGH, "Secret passed as a build argument",
    rationale="`builder.args` become `--build-arg`: the value stays in the image history "
    "(`docker history`) for anyone who can pull the image.",
    fix="Use `builder.secrets` (mounted with RUN --mount=type=secret) instead of an arg.",
    insecure=HEAD + "builder:\n  arch: amd64\n  args:\n    NPM_TOKEN: npm_" + "a1B2" * 9 + "\n",
    secure=HEAD + "builder:\n  arch: amd64\n  secrets:\n    - NPM_TOKEN\n",
    family=FAMILY,
)
def build_args(rule: Rule, ctx: Context) -> Iterator[Finding]:
    args = ctx.project.get("builder", "args")
    if not isinstance(args, dict):
        return
    for key, value in args.items():
        why = looks_secret(key, value)
        if why:
            yield _finding(rule, ctx, ("builder", "args", key),
                           f"looks like a secret ({why}); it stays in the image history", value)


COVERED = (("env",), ("builder", "args"), ("registry",), ("ssh", "key_data"), ("proxy", "ssl"))


def _covered(path: Path) -> bool:
    if any(path[: len(p)] == p for p in COVERED):
        return True
    return len(path) >= 3 and path[0] in ("servers", "accessories") and (
        path[2] in ("env", "registry") or path[2:4] == ("proxy", "ssl"))


def _scalars(node: Any, path: Path) -> Iterator[tuple[Path, str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _scalars(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _scalars(value, (*path, index))
    else:
        last = next((p for p in reversed(path) if isinstance(p, str)), "")
        yield path, last, node


@define(
    "KS205", Severity.HIGH, "Secret in labels, cmd, aliases or another setting",
    rationale="Anything in deploy.yml is in git; labels and commands also show up in "
    "`docker inspect` and process lists on the servers.",
    fix="Move the value into .kamal/secrets and reference it through env.secret.",
    insecure=HEAD + "servers:\n  web:\n    hosts: [203.0.113.10]\n"
    "    cmd: bin/start --token ghp_" + "x1Y2z3" * 6 + "\n",
    secure=HEAD + "servers:\n  web:\n    hosts: [203.0.113.10]\n    cmd: bin/start\n",
    family=FAMILY,
)
def elsewhere(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, key, value in _scalars(ctx.project.data, ()):
        if path and not _covered(path):
            why = looks_secret(key, value)
            if why:
                yield _finding(rule, ctx, path, f"looks like a secret ({why})", value)


ssl_pem = define(
    "KS206", Severity.CRITICAL, "TLS private key or certificate written inline in proxy.ssl",
    rationale="proxy.ssl's certificate_pem and private_key_pem name secrets; an inline PEM "
    "puts the TLS private key in git.",
    fix="Rotate the certificate, then name secrets: `private_key_pem: PRIVATE_KEY_PEM`.",
    insecure=HEAD + "proxy:\n  host: shop.example.com\n  ssl:\n    certificate_pem: CERT_PEM\n"
    "    private_key_pem: \"-----BEGIN PRIVATE KEY-----\\nMIIE...\"\n",
    secure=HEAD + "proxy:\n  host: shop.example.com\n  ssl:\n    certificate_pem: CERT_PEM\n"
    "    private_key_pem: PRIVATE_KEY_PEM\n",
    family=FAMILY,
)(filled_schema_check(lambda ctx, value: _ssl_pem_fix(ctx, value)))


def _ssl_pem_fix(ctx: Context, value: object) -> tuple[str | None, Severity | None]:
    """The secret-name form exists only on Kamal 2.8+: older Kamal gets advice it can use."""
    from kamal_secure.kamal_version import since

    if ctx.kamal.accepts("proxy.ssl.private_key_pem"):
        return None, None
    return (f"Rotate the certificate and remove the PEMs: {ctx.kamal.describe()} has no "
            f"proxy.ssl certificate settings (added in Kamal "
            f"{since('proxy.ssl.private_key_pem')}; older Kamal rejects them). Use `ssl: true` "
            "(Let's Encrypt), or upgrade Kamal and name secrets there.", None)


def _secrets_at(name: str, line: int, column: int) -> Location:
    return Location(name, line, column)


@define(
    "KS207", Severity.HIGH, "Literal value in a .kamal/secrets file",
    rationale="Kamal 2's secrets files are meant to be committed and to hold references "
    "(`$VAR`, `$(op read ...)`, `$(kamal secrets fetch ...)`); a literal there is a secret in "
    "git, or one `git add` away from it.",
    fix="Replace the value with a reference to your password manager or environment: "
    "`RAILS_MASTER_KEY=$(cat config/master.key)`, `TOKEN=$TOKEN`.",
    insecure="KAMAL_REGISTRY_PASSWORD=" + FAKE + "\n",
    secure="KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD\n",
    family=FAMILY,
    example_path=".kamal/secrets",
)
def secrets_file(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for source in ctx.project.secrets:
        for entry in source.entries:
            if entry.quote != "'" and is_reference(entry.value):
                continue
            expands = entry.quote != "'" and "$" in entry.value
            why = looks_secret(entry.name, entry.value)
            if why is None and expands:
                continue  # literal text around a reference: `postgres://app:${PW}@db/app`
            severity = None if why else Severity.LOW
            yield rule.finding(
                f"{entry.name} holds a literal value" + (f" ({why})" if why else ""),
                _secrets_at(source.name, entry.line, entry.column),
                evidence=redact(entry.value), severity=severity)


registry_in_app = define(
    "KS208", Severity.MEDIUM, "Registry password handed to the app (env.secret)",
    rationale="KAMAL_REGISTRY_PASSWORD in env.secret gives every container the token that "
    "pushes images: a compromised app can then replace its own image.",
    fix="Remove it from env.secret; only Kamal needs it, through registry.password.",
    insecure=HEAD + "env:\n  secret:\n    - KAMAL_REGISTRY_PASSWORD\n    - RAILS_MASTER_KEY\n",
    secure=HEAD + "env:\n  secret:\n    - RAILS_MASTER_KEY\n",
    family=FAMILY,
)(schema_check)

RULES: tuple[Rule, ...] = (registry_password, registry_username, clear_env, build_args,
                           elsewhere, ssl_pem, secrets_file, registry_in_app)
