"""KS209: secrets rendered into a command line (cmd, aliases).

A command line is visible to every user of the host in ``ps`` and in Kamal's
own output and logs; a secret there leaks even when it is not written in git
(ERB that reads a file into it, a shell that echoes it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kamal_secure.config.erb import DYNAMIC
from kamal_secure.config.yamlsafe import Path
from kamal_secure.report.model import Finding, Severity, redact
from kamal_secure.rules.base import Context, Rule, define, yaml_path
from kamal_secure.secretscan import is_reference, password_name, placeholder, secret_name

FAMILY = "secrets"
PASSWORD_FLAG = re.compile(r"(?:^|[\s'\"])(--?(?:requirepass|masterauth|password|passwd|pass|"
                           r"auth|token|api-?key|secret(?:-key)?|access-key))(?:=|\s+)"
                           r"(\"[^\"]*\"|'[^']*'|\S+)")
ECHO = re.compile(r"\b(echo|printf)\b([^;&|\n]*)")
VARIABLE = re.compile(r"\$\$?\{?([A-Za-z_][A-Za-z0-9_]*)")
INCLUDE_PASSWORD = re.compile(r"--include-password\b")
ASSIGNMENT = re.compile(r"(?:^|[\s;&|'\"(])([A-Za-z_][A-Za-z0-9_]*)="
                        r"(\"[^\"]*\"|'[^']*'|[^\s;&|'\"]+)")
MYSQL_P = re.compile(r"\b(mysql|mysqldump|mysqladmin|mariadb)\b[^;&|]*?\s-p([^\s'\"]+)")
USER_COLON = re.compile(r"\s(-u|--user)\s+['\"]?[^\s:'\"]+:([^\s'\"@]+)")
PRINTENV = re.compile(r"\bprintenv\s+([A-Za-z_][A-Za-z0-9_]*)")
READS = re.compile(r"\b(File|IO|Pathname)\.(read|binread|readlines|open)\b|\.read\b|"
                   r"\bcredentials\b|`|%x")


def commands(data: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """Every command Kamal runs from the config: role and accessory cmd, aliases."""
    for section in ("servers", "accessories"):
        groups = data.get(section)
        for name, item in groups.items() if isinstance(groups, dict) else ():
            cmd = item.get("cmd") if isinstance(item, dict) else None
            if isinstance(cmd, str):
                yield (section, name, "cmd"), cmd
    aliases = data.get("aliases")
    for name, line in aliases.items() if isinstance(aliases, dict) else ():
        if isinstance(line, str):
            yield ("aliases", name), line


def _flag_value(raw: str) -> str:
    return raw[1:-1] if raw[:1] in "\"'" and raw[-1:] == raw[:1] else raw


def _password_args(text: str) -> Iterator[tuple[str, str, bool]]:
    """(flag, why, placeholder) for each password flag followed by a value we can judge."""
    for match in PASSWORD_FLAG.finditer(text):
        flag, value = match.group(1), _flag_value(match.group(2))
        if value.startswith("$") or value.startswith("-") or not value:
            continue  # expanded inside the container from its environment, or another flag
        if DYNAMIC in value:
            yield flag, f"ERB renders a value into {flag}", False
        else:
            yield flag, f"{flag} is followed by a literal password", placeholder(value)


def _echoed(text: str) -> Iterator[str]:
    for match in ECHO.finditer(text):
        for var in VARIABLE.findall(match.group(2)):
            if secret_name(var):
                yield f"{match.group(1)} prints ${var} into the terminal and logs"
    for var in PRINTENV.findall(text):
        if secret_name(var):
            yield f"printenv prints {var} into the terminal and logs"


def _literal(value: str) -> bool:
    return bool(value) and not value.startswith("$") and not is_reference(value)


def _inline_credentials(text: str) -> Iterator[tuple[str, bool]]:
    """(why, placeholder) for NAME=secret prefixes, mysql -pSECRET and -u user:password."""
    for name, raw in ASSIGNMENT.findall(text):
        value = _flag_value(raw)
        if password_name(name) and _literal(value):
            yield f"{name}= sets a literal password on the command line", placeholder(value)
    for tool, value in MYSQL_P.findall(text):
        if _literal(value):
            yield f"{tool} -p carries a literal password", placeholder(value)
    for flag, value in USER_COLON.findall(text):
        if _literal(value):
            yield f"{flag} user:password carries a literal password", placeholder(value)


def _erb_reads(ctx: Context, path: Path, text: str) -> bool:
    """Does an ERB output tag in this value read a file (or run a command) into it?"""
    return DYNAMIC in text and any(READS.search(tag.source) for tag in ctx.erb_tags(path, text))


def _reasons(ctx: Context, path: Path, text: str) -> Iterator[tuple[str, Severity | None]]:
    reads = _erb_reads(ctx, path, text)
    for flag, why, weak in _password_args(text):
        if reads and why.startswith("ERB"):
            why, reads = f"ERB reads a file (or runs a command) into {flag}", False
        yield why, Severity.MEDIUM if weak else None
    for why in _echoed(text):
        yield why, None
    for why, weak in _inline_credentials(text):
        yield why, Severity.MEDIUM if weak else None
    if reads:
        yield "ERB reads a file (or runs a command) into the command line", None
    if INCLUDE_PASSWORD.search(text):
        yield "--include-password puts the database password on the client's command line", \
            Severity.MEDIUM


@define(
    "KS209", Severity.HIGH, "Secret rendered into a command line (cmd, aliases)",
    rationale="A role's or accessory's `cmd` and an alias become command lines: on the host "
    "every user sees them in `ps`, Kamal prints them, and CI keeps them in its logs. A "
    "password after `--requirepass`, ERB that reads a file into the command "
    "(`<%= File.read(...) %>`), an alias that echoes `$DATABASE_PASSWORD` or "
    "`dbconsole --include-password` all put a secret there, even when git never sees it.",
    fix="Pass secrets through the environment (env.secret) and let the process read them "
    "there (`redis-server` reads a config file; `sh -c 'exec redis-server --requirepass "
    "\"$REDIS_PASSWORD\"'` at least keeps it out of Kamal's output); never echo secrets.",
    insecure="service: shop\nimage: acme/shop\naccessories:\n  redis:\n    image: redis:7.2\n"
    "    host: 203.0.113.10\n    cmd: redis-server --requirepass somepassword\n",
    secure="service: shop\nimage: acme/shop\naccessories:\n  redis:\n    image: redis:7.2\n"
    "    host: 203.0.113.10\n    cmd: redis-server /usr/local/etc/redis/redis.conf\n"
    "    env:\n      secret:\n        - REDIS_PASSWORD\n",
    family=FAMILY,
    also=((Severity.MEDIUM, "a placeholder-looking password, or dbconsole --include-password"),),
)
def command_line(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, text in commands(ctx.project.data):
        for why, severity in _reasons(ctx, path, text):
            yield rule.finding(f"{yaml_path(path)}: {why}", ctx.at(*path),
                               evidence=redact(text) if severity is None else None,
                               severity=severity)


RULES: tuple[Rule, ...] = (command_line,)
