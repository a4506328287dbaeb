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
from kamal_secure.secretscan import Verdict, is_reference, verdict

FAMILY = "secrets"
URL_CREDENTIALS = "URL with a password"
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


PLACEHOLDER = ((Severity.MEDIUM, "a placeholder-looking value (changeme, <password>, a name)"),)


def _finding(rule: Rule, ctx: Context, path: Path, found: Verdict, value: Any,
             suffix: str = "") -> Finding:
    why = f"looks like a secret ({found.why}){suffix}"
    if found.placeholder:
        why = f"holds a placeholder-looking literal ({found.why}){suffix}: a weak or default " \
            "password if it is used as is"
    return rule.finding(f"{yaml_path(path)}: {why}", ctx.at(*path), evidence=redact(str(value)),
                        severity=Severity.MEDIUM if found.placeholder else None)


@define(
    "KS203", Severity.HIGH, "Secret in clear env",
    rationale="`env` and `env.clear` values are written in deploy.yml (git) and shown by "
    "`kamal config` and `docker inspect`. Only `env.secret` names are resolved from the "
    "secrets files. A key named like a password holding a literal counts whatever the value's "
    "entropy (`RCON_PASSWORD: password123`), and so does a URL with a password "
    "(`redis://:pw@host`); placeholder-looking values are reported at medium.",
    fix="Move it: list the name under `env.secret` and set the value in .kamal/secrets.",
    insecure=HEAD + "env:\n  clear:\n    AWS_SECRET_ACCESS_KEY: " + FAKE + "\n",
    secure=HEAD + "env:\n  secret:\n    - AWS_SECRET_ACCESS_KEY\n",
    family=FAMILY,
    also=PLACEHOLDER,
)
def clear_env(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, key, value in env_entries(ctx):
        found = verdict(key, value)
        if found:
            yield _finding(rule, ctx, path, found, value)


@define(
    "KS204", Severity.HIGH, "Secret passed as a build argument",
    rationale="`builder.args` become `--build-arg`: the value stays in the image history "
    "(`docker history`) for anyone who can pull the image.",
    fix="Use `builder.secrets` (mounted with RUN --mount=type=secret) instead of an arg.",
    insecure=HEAD + "builder:\n  arch: amd64\n  args:\n    NPM_TOKEN: npm_" + "a1B2" * 9 + "\n",
    secure=HEAD + "builder:\n  arch: amd64\n  secrets:\n    - NPM_TOKEN\n",
    family=FAMILY,
    also=PLACEHOLDER,
)
def build_args(rule: Rule, ctx: Context) -> Iterator[Finding]:
    args = ctx.project.get("builder", "args")
    if not isinstance(args, dict):
        return
    for key, value in args.items():
        found = verdict(key, value)
        if found:
            yield _finding(rule, ctx, ("builder", "args", key), found, value,
                           "; it stays in the image history")


COVERED = (("env",), ("builder", "args"), ("registry",), ("ssh", "key_data"), ("proxy", "ssl"))


def _covered(path: Path) -> bool:
    if any(path[: len(p)] == p for p in COVERED):
        return True
    return len(path) >= 3 and path[0] in ("servers", "accessories") and (
        path[2] in ("env", "registry") or path[2:4] == ("proxy", "ssl"))


def _owned(path: Path) -> bool:
    """Clear env and build args: KS203 and KS204 report them."""
    return path[:1] == ("env",) or path[:2] == ("builder", "args") or (
        len(path) >= 3 and path[0] in ("servers", "accessories") and path[2] == "env")


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
    also=PLACEHOLDER,
)
def elsewhere(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, key, value in _scalars(ctx.project.data, ()):
        if not path or _owned(path):
            continue
        found = verdict(key, value)
        # settings other rules judge (registry, key_data, proxy.ssl) still must not carry
        # credentials in a URL (`registry.server: https://user:token@registry`)
        if found and (not _covered(path) or found.why == URL_CREDENTIALS):
            yield _finding(rule, ctx, path, found, value)


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
    from kamal_secure.facts.kamal_version import since

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
    also=(*PLACEHOLDER,
          (Severity.LOW, "a literal that does not look like a secret (a setting, a name)")),
)
def secrets_file(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for source in ctx.project.secrets:
        for entry in source.entries:
            if entry.quote != "'" and is_reference(entry.value):
                continue
            expands = entry.quote != "'" and "$" in entry.value
            found = verdict(entry.name, entry.value)
            if found is None and expands:
                continue  # literal text around a reference: `postgres://app:${PW}@db/app`
            severity = Severity.LOW if found is None else \
                Severity.MEDIUM if found.placeholder else None
            yield rule.finding(
                f"{entry.name} holds a literal value" + (f" ({found.why})" if found else ""),
                _secrets_at(source.name, entry.line, entry.column),
                evidence=redact(entry.value), severity=severity)


@define(
    "KS210", Severity.HIGH, "Kamal 1 .env file beside the config",
    rationale="Kamal 1 read `.env` (rendered from `.env.erb` by `kamal envify`); Kamal 2 reads "
    ".kamal/secrets and ignores both. A literal secret in them is a secret in git (or one "
    "`git add` away), and the file itself is a Kamal 1 leftover whose values may still be "
    "live. ERB values in .env.erb are references and are not reported.",
    fix="Move each value to .kamal/secrets as a reference (`DB_PASSWORD=$(op read ...)`), "
    "rotate any literal secret that was committed, and delete the .env file.",
    insecure="MYSQL_ROOT_PASSWORD=ThisIsTheDatabasePassword1!\n",
    secure="# .env removed; .kamal/secrets holds MYSQL_ROOT_PASSWORD=$(op read ...)\n",
    family=FAMILY,
    example_path=".env",
    also=(*PLACEHOLDER, (Severity.LOW, "the file itself, when it sets values but no literal "
                         "secret")),
)
def dotenv_file(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for source in ctx.project.dotenv:
        literal = False
        for entry in source.entries:
            if entry.quote != "'" and is_reference(entry.value):
                continue
            found = verdict(entry.name, entry.value)
            if found is None:
                continue
            literal = True
            yield rule.finding(f"{source.name}: {entry.name} holds a literal secret ({found.why})",
                               _secrets_at(source.name, entry.line, entry.column),
                               evidence=redact(entry.value),
                               severity=Severity.MEDIUM if found.placeholder else None)
        if source.entries and not literal:
            yield rule.finding(f"{source.name} is a Kamal 1 env file: Kamal 2 reads .kamal/secrets "
                               "instead; migrate its values and delete it",
                               _secrets_at(source.name, 1, 1), severity=Severity.LOW)


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
                           elsewhere, ssl_pem, secrets_file, registry_in_app, dotenv_file)
