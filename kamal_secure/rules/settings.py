"""KS50x: app settings in clear env that turn security off; KS520 require_destination."""

from __future__ import annotations

import re
from collections.abc import Iterator

from kamal_secure.config.erb import is_dynamic
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Context, Rule, define, schema_check, yaml_path
from kamal_secure.rules.secrets import env_entries

FAMILY = "settings"
HEAD = "service: shop\nimage: acme/shop\nenv:\n  clear:\n"

debug = define(
    "KS501", Severity.LOW, "Debug mode on in a deployed environment",
    rationale="Debug modes (Django/Flask DEBUG, APP_DEBUG) print stack traces, settings and "
    "sometimes an interactive console to anyone who triggers an error.",
    fix="Set DEBUG to false (or remove it) for deployed destinations.",
    insecure=HEAD + "    DEBUG: \"true\"\n",
    secure=HEAD + "    DEBUG: \"false\"\n",
    family=FAMILY,
)(schema_check)

force_ssl = define(
    "KS502", Severity.LOW, "Forced HTTPS turned off",
    rationale="`*FORCE_SSL=false` (Rails config.force_ssl, SECURE_SSL_REDIRECT) lets the app "
    "answer over plain HTTP and drops HSTS and secure cookies.",
    fix="Leave forced SSL on; if TLS ends at a load balancer, also set assume_ssl.",
    insecure=HEAD + "    RAILS_FORCE_SSL: \"false\"\n",
    secure=HEAD + "    RAILS_FORCE_SSL: \"true\"\n",
    family=FAMILY,
)(schema_check)

trusted_proxies = define(
    "KS503", Severity.LOW, "Every address trusted as a proxy",
    rationale="TRUSTED_PROXIES=0.0.0.0/0 makes the app believe any client's X-Forwarded-For: "
    "IP-based limits, audit logs and allowlists can be spoofed.",
    fix="List only your proxies' addresses (kamal-proxy runs on the Docker network).",
    insecure=HEAD + "    TRUSTED_PROXIES: 0.0.0.0/0\n",
    secure=HEAD + "    TRUSTED_PROXIES: 172.16.0.0/12\n",
    family=FAMILY,
)(schema_check)

allowed_hosts = define(
    "KS504", Severity.LOW, "Any Host header accepted (ALLOWED_HOSTS=*)",
    rationale="A wildcard ALLOWED_HOSTS turns off host-header validation: password-reset "
    "links and cache keys can be poisoned with an attacker's host name.",
    fix="List the real host names.",
    insecure=HEAD + "    ALLOWED_HOSTS: \"*\"\n",
    secure=HEAD + "    ALLOWED_HOSTS: shop.example.com\n",
    family=FAMILY,
)(schema_check)


NOT_PRODUCTION = re.compile(r"(?i)^(dev|development|test|testing|staging|stage|review|preview|"
                            r"qa|uat|sandbox|local|demo)([-_.].*)?$")
ENV_NAMES = ("RAILS_ENV", "RACK_ENV", "APP_ENV", "NODE_ENV", "MIX_ENV", "ENVIRONMENT")
LOG_LEVEL = re.compile(r"(?i)(^|_)LOG_?LEVEL$")
CORS = re.compile(r"(?i)(^|_)CORS(_ALLOW(ED)?)?_ORIGINS?$|^ACCESS_CONTROL_ALLOW_ORIGIN$|"
                  r"(^|_)ALLOWED_ORIGINS$")
CORS_ALL = re.compile(r"(?i)(^|_)CORS_(ORIGIN_)?ALLOW_ALL(_ORIGINS)?$")
TRUE = re.compile(r"(?i)^(true|1|yes|on)$")


def production(ctx: Context) -> bool:
    """Deployed for real: no staging-like destination and no staging-like *_ENV setting."""
    if ctx.project.destination and NOT_PRODUCTION.match(ctx.project.destination):
        return False
    for _path, key, value in env_entries(ctx):
        if key in ENV_NAMES and isinstance(value, str) and NOT_PRODUCTION.match(value):
            return False
    return True


def _clear_env(ctx: Context, key_re: re.Pattern[str], bad: re.Pattern[str],
               ) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    if not production(ctx):
        return
    for path, key, value in env_entries(ctx):
        if key_re.search(key) and not is_dynamic(value) and bad.match(str(value).strip()):
            yield key, path


@define(
    "KS505", Severity.LOW, "Debug logging in production",
    rationale="`RAILS_LOG_LEVEL`/`LOG_LEVEL` at debug (or trace) logs request parameters, SQL "
    "with its values, headers and job arguments: tokens and personal data end up in log "
    "files and log services that many people can read.",
    fix="Use info (or warn) in production; turn debug on for a short, deliberate session only.",
    insecure=HEAD + "    RAILS_LOG_LEVEL: debug\n",
    secure=HEAD + "    RAILS_LOG_LEVEL: info\n",
    family=FAMILY,
)
def debug_logging(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key, path in _clear_env(ctx, LOG_LEVEL, re.compile(r"(?i)^(debug|trace|all)$")):
        yield rule.finding(f"{yaml_path(path)}: {key} is debug in a production deploy",
                           ctx.at(*path))


@define(
    "KS506", Severity.MEDIUM, "CORS allows every origin in production",
    rationale="`CORS_ORIGINS: \"*\"` lets any web site call the API from its visitors' "
    "browsers and read the answers: with token auth (or a misconfigured credentials setting) "
    "another site can act for your users.",
    fix="List the origins that need access: `CORS_ORIGINS: https://app.example.com`.",
    insecure=HEAD + "    CORS_ORIGINS: \"*\"\n",
    secure=HEAD + "    CORS_ORIGINS: https://shop.example.com\n",
    family=FAMILY,
)
def cors_any(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key, path in _clear_env(ctx, CORS, re.compile(r"^(\*|.*[,\s]\*([,\s].*)?)$")):
        yield rule.finding(f"{yaml_path(path)}: {key} allows every origin (*)", ctx.at(*path))
    for key, path in _clear_env(ctx, CORS_ALL, TRUE):
        yield rule.finding(f"{yaml_path(path)}: {key} allows every origin", ctx.at(*path))


@define(
    "KS520", Severity.LOW, "Destinations exist but require_destination is not set",
    rationale="With destination files (deploy.staging.yml, deploy.production.yml) a bare "
    "`kamal deploy` still deploys the base config, which is usually neither: an easy way to "
    "ship the wrong settings.",
    fix="Set `require_destination: true` so that kamal insists on `-d DEST`.",
    insecure="service: shop\nimage: acme/shop\n",
    secure="service: shop\nimage: acme/shop\nrequire_destination: true\n",
    family=FAMILY,
)
def require_destination(rule: Rule, ctx: Context) -> Iterator[Finding]:
    found = ctx.project.destination_files
    if not found or ctx.project.get("require_destination") is True:
        return
    where = ctx.at("require_destination") if "require_destination" in ctx.project.data \
        else ctx.at()
    yield rule.finding(f"{len(found)} destination file(s) ({', '.join(found[:3])}) but "
                       "require_destination is not true", where)


RULES: tuple[Rule, ...] = (debug, force_ssl, trusted_proxies, allowed_hosts, debug_logging,
                           cors_any, require_destination)
