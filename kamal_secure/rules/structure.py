"""KS003-KS005: keys Kamal 2 does not know (it refuses to start), Kamal 1 leftovers, ssh_key.
KS008: values of a type Kamal 2 rejects (``ssh.keys`` as a string, a port in quotes...)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from kamal_secure.config.erb import DYNAMIC
from kamal_secure.config.load import json_type
from kamal_secure.config.yamlsafe import Path
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Context, Rule, define, yaml_path
from kamal_secure.schemas import Violation

FAMILY = "structure"
KAMAL1: dict[tuple[str, ...], str] = {
    ("traefik",): "Kamal 2 replaced Traefik with kamal-proxy: move host/ssl settings to "
    "`proxy:` (host, ssl, app_port) and drop the traefik section",
    ("healthcheck",): "move it to `proxy: {healthcheck: {path, interval, timeout}}`",
    ("stop_wait_time",): "renamed: use `drain_timeout` (and `stop_timeout` on roles)",
    ("primary_web_role",): "renamed: use `primary_role`",
    ("builder", "multiarch"): "replaced by `builder.arch` (e.g. `arch: amd64`)",
    ("servers", "*", "traefik"): "roles use `proxy: true|false` or a proxy hash in Kamal 2",
    ("accessories", "*", "traefik"): "accessories use `proxy:` in Kamal 2",
    ("servers", "*", "healthcheck"): "move it to the role's `proxy: {healthcheck: {...}}`",
}


def _unknown(ctx: Context) -> Iterator[Violation]:
    for found in ctx.structure_violations:
        if found.key is not None and DYNAMIC not in found.key:
            yield found


def _kamal1_hint(path: Path) -> str | None:
    for pattern, hint in KAMAL1.items():
        if len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path,
                                                                          strict=True)):
            return hint
    return None


@define(
    "KS003", Severity.MEDIUM, "Unknown key: Kamal 2 refuses to run this config",
    rationale="Kamal 2 validates every key against its documented set and stops with "
    "`unknown key`; a misspelt security setting (say `forward_agnet`) would otherwise be "
    "silently ignored by a less strict reader.",
    fix="Fix the spelling or remove the key; `kamal docs SECTION` lists the allowed keys. "
    "Top-level `x-*` keys are allowed for YAML anchors.",
    insecure="service: shop\nimage: acme/shop\nssh:\n  user: deploy\n  forward_agnet: false\n",
    secure="service: shop\nimage: acme/shop\nssh:\n  user: deploy\n  forward_agent: false\n",
    family=FAMILY,
)
def unknown_key(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for found in _unknown(ctx):
        path = found.path
        if _kamal1_hint(path) is None and path != ("ssh_key",):
            parent = yaml_path(path[:-1]) or "the top level"
            key = yaml_path((found.key or "",))
            yield rule.finding(f"{parent}: unknown key {key!r}", ctx.at(*path))
    yield from _too_new(rule, ctx)


def _too_new(rule: Rule, ctx: Context) -> Iterator[Finding]:
    """Keys a later Kamal 2 added: the project's Kamal is looked up only when there are some."""
    from kamal_secure.facts.kamal_version import newer_keys

    newer = dict(newer_keys(ctx.project.data))
    if not newer:
        return
    kamal = ctx.kamal
    for pattern, since in newer.items():
        if kamal.accepts(".".join(pattern)):
            continue
        for path in _concrete(ctx.project.data, pattern):
            yield rule.finding(f"{yaml_path(path)} needs Kamal {since} or later; "
                               f"{kamal.describe()} rejects it (`unknown key`)", ctx.at(*path),
                               fix=f"Upgrade Kamal to {since} or later, or remove the key.")


def _concrete(node: object, pattern: tuple[str, ...]) -> Iterator[Path]:
    """The real paths (names filled in) that match a ``*`` pattern."""
    if not pattern:
        yield ()
        return
    if not isinstance(node, dict):
        return
    head, rest = pattern[0], pattern[1:]
    for key, value in node.items():
        if head in ("*", str(key)):
            yield from ((key, *tail) for tail in _concrete(value, rest))


@define(
    "KS004", Severity.MEDIUM, "Kamal 1 setting: Kamal 2 rejects it",
    rationale="Kamal 2 refuses Kamal 1 keys such as traefik, healthcheck, stop_wait_time and "
    "builder.multiarch. A config that still carries them was never deployed with Kamal 2, "
    "or its security settings (Traefik's TLS, dashboards) no longer apply.",
    fix="Migrate the setting as the message says (kamal-deploy.org: Upgrading to Kamal 2).",
    insecure="service: shop\nimage: acme/shop\nbuilder:\n  multiarch: false\n",
    secure="service: shop\nimage: acme/shop\nbuilder:\n  arch: amd64\n",
    family=FAMILY,
)
def kamal1(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for found in _unknown(ctx):
        hint = _kamal1_hint(found.path)
        if hint is not None:
            yield rule.finding(f"{yaml_path(found.path)} is a Kamal 1 setting: {hint}",
                               ctx.at(*found.path))
    for key in ("remote", "local"):
        if isinstance(ctx.project.get("builder", key), dict):
            yield rule.finding(f"builder.{key} is a Kamal 1 hash ({{arch, host}}): Kamal 2 "
                               "takes `arch:` plus `remote: ssh://HOST` or `local: true`",
                               ctx.at("builder", key))


@define(
    "KS005", Severity.MEDIUM, "Top-level ssh_key: not a Kamal setting",
    rationale="Some templates put `ssh_key:` at the top level. Kamal 2 stops with "
    "`unknown key: ssh_key`, and Kamal 1 ignored it: the key you meant to pin was never used, "
    "Kamal offered every key you have instead.",
    fix="Replace it with `ssh: {keys: [PATH], keys_only: true}`.",
    insecure="service: shop\nimage: acme/shop\nssh_key: ~/.ssh/deploy\n",
    secure="service: shop\nimage: acme/shop\nssh:\n  keys: [\"~/.ssh/deploy\"]\n"
    "  keys_only: true\n",
    family=FAMILY,
)
def ssh_key(rule: Rule, ctx: Context) -> Iterator[Finding]:
    if "ssh_key" not in ctx.project.data:
        return
    value = ctx.project.data["ssh_key"]
    keys = value if isinstance(value, list) else [value]
    shown = [str(k) for k in keys if isinstance(k, str | int) and "PRIVATE KEY" not in str(k)]
    replacement = "ssh: {keys: " + json.dumps(shown or ["~/.ssh/DEPLOY_KEY"]) + \
        ", keys_only: true}"
    yield rule.finding(f"top-level ssh_key is not a Kamal key; write `{replacement}`",
                       ctx.at("ssh_key"))


KAMAL1_HASHES = {("builder", "remote"), ("builder", "local")}


def _dynamic(value: object) -> bool:
    """Rendered by ERB at run time: its type is not known until then."""
    if isinstance(value, str):
        return DYNAMIC in value
    if isinstance(value, dict):
        return any(_dynamic(k) or _dynamic(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_dynamic(v) for v in value)
    return False


@define(
    "KS008", Severity.HIGH, "Value of a type Kamal 2 rejects",
    rationale="Kamal 2 checks every value's type against its documented examples and refuses "
    "to run when one does not match: `ssh.keys` given as one string, `keys_only: \"true\"`, "
    "a port as a list. Such a config was never deployed as written, and the checks that read "
    "that setting cannot tell what was meant, so it is not reported as clean.",
    fix="Write the value in the type the message names (`kamal docs SECTION` shows examples), "
    "e.g. `keys: [\"~/.ssh/deploy\"]`.",
    insecure="service: shop\nimage: acme/shop\nssh:\n  keys: ~/.ssh/deploy\n  keys_only: true\n",
    secure="service: shop\nimage: acme/shop\nssh:\n  keys: [\"~/.ssh/deploy\"]\n"
    "  keys_only: true\n",
    family=FAMILY,
    references=("https://kamal-deploy.org/docs/configuration/overview/",),
)
def wrong_type(rule: Rule, ctx: Context) -> Iterator[Finding]:
    seen: set[Path] = set()
    for found in sorted(ctx.structure_violations, key=lambda v: len(v.path)):
        if found.rule != rule.id or found.key is not None or found.path in seen:
            continue
        value = ctx.project.get(*found.path)
        if found.path in KAMAL1_HASHES and isinstance(value, dict):
            continue  # KS004 says what to write instead
        if _dynamic(value) or any(found.path[:n] in seen for n in range(len(found.path))):
            continue
        seen.add(found.path)
        where = yaml_path(found.path) or "the top level"
        # the type only, never the value: it may be a secret
        yield rule.finding(f"{where}: {found.message}, not {json_type(value)}",
                           ctx.at(*found.path))


RULES: tuple[Rule, ...] = (unknown_key, kamal1, ssh_key, wrong_type)
