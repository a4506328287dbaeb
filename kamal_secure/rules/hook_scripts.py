"""KS51x: hooks in .kamal/hooks (or hooks_path). They run locally, several with every secret.

pre-connect, pre-deploy and post-deploy receive every secret as an environment
variable, so anything that prints the environment or traces commands leaks them
into terminals and CI logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kamal_secure.config.files import Hook
from kamal_secure.report.model import Finding, Location, Severity, redact
from kamal_secure.rules.base import Context, Rule, define
from kamal_secure.secretscan import VENDOR, looks_secret, vendor_match

FAMILY = "hooks"
HOOK = ".kamal/hooks/pre-deploy"
SAFE = "#!/usr/bin/env bash\nset -euo pipefail\necho \"Deploying $KAMAL_SERVICE_VERSION\"\n"
XTRACE = re.compile(r"^\s*set\s+(-[a-wyz]*x|-o\s+xtrace)|^#!.*\s-[a-z]*x\b|\bbash\s+-[a-z]*x\b")
DUMP = re.compile(r"(^|[;&|]\s*|\becho\s+\$\(\s*)(printenv|env|export\s+-p|declare\s+-x|set)"
                  r"\s*($|[;&|>)#])")
PIPE_SHELL = re.compile(r"\b(curl|wget)\b[^|#]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b")
EVAL = re.compile(r"(^|[;&|]\s*|\s)eval\s")
KAMAL_VAR = re.compile(r"\$\{?KAMAL_[A-Z_]+")
ROOT_LOGIN = re.compile(r"\b(ssh|scp|rsync|sftp)\b[^|;&#\n]*?(\broot@|-l\s*root\b|"
                        r"\bUser=root\b)")
SYSTEM_UNIT = re.compile(r"/(etc|lib|usr/lib)/systemd/system\b|\bsystemctl\s+(enable|link|"
                         r"daemon-reload|edit)\b|/etc/init\.d/|\bupdate-rc\.d\b|/etc/cron")


def _lines(hook: Hook) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(hook.text.splitlines(), start=1):
        if number == 1 or not line.lstrip().startswith("#"):
            yield number, line


def _at(hook: Hook, line: int = 1, column: int = 1) -> Location:
    return Location(hook.name, line, column)


def _grep(rule: Rule, ctx: Context, pattern: re.Pattern[str], what: str) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        for number, line in _lines(hook):
            match = pattern.search(line)
            if match:
                yield rule.finding(f"{what}", _at(hook, number, match.start() + 1))


@define(
    "KS510", Severity.LOW, "Hook is not executable",
    rationale="Kamal runs hooks as `/usr/bin/env .kamal/hooks/NAME`; a hook without the "
    "execute bit fails every deploy, and people then reach for `--skip-hooks`, which also "
    "skips the checks the hooks were there for.",
    fix="`chmod 755 .kamal/hooks/NAME` and commit the mode (`git update-index --chmod=+x`).",
    insecure=SAFE, secure=SAFE, family=FAMILY, example_path=HOOK,
)
def not_executable(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        if not hook.mode & 0o100:
            yield rule.finding(f"{hook.name} has mode {hook.mode:o}: Kamal cannot run it",
                               _at(hook))


@define(
    "KS511", Severity.HIGH, "Hook is writable by group or others",
    rationale="A hook runs on your machine with your rights and, for pre-connect, pre-deploy "
    "and post-deploy, every secret in its environment. Whoever can write it can steal them.",
    fix="`chmod go-w .kamal/hooks/*`.",
    insecure=SAFE, secure=SAFE, family=FAMILY, example_path=HOOK,
)
def writable(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        if hook.mode & 0o022:
            yield rule.finding(f"{hook.name} has mode {hook.mode:o}: others can change it",
                               _at(hook))


@define(
    "KS512", Severity.HIGH, "Hook traces its commands (set -x)",
    rationale="Hooks receive secrets in their environment; with xtrace every command is "
    "echoed with its variables expanded, into the terminal and the CI log.",
    fix="Remove `set -x` (or `bash -x`); print only what you need, without secrets.",
    insecure="#!/usr/bin/env bash\nset -ex\ncurl -fsS -H \"Authorization: $API_TOKEN\" "
    "https://deploys.example.com\n",
    secure="#!/usr/bin/env bash\nset -e\ncurl -fsS -H \"Authorization: $API_TOKEN\" "
    "https://deploys.example.com\n",
    family=FAMILY, example_path=HOOK,
)
def xtrace(rule: Rule, ctx: Context) -> Iterator[Finding]:
    yield from _grep(rule, ctx, XTRACE, "xtrace echoes every command with secrets expanded")


@define(
    "KS513", Severity.HIGH, "Hook dumps its environment (env, printenv)",
    rationale="pre-connect, pre-deploy and post-deploy get every secret as an environment "
    "variable: `env` or `printenv` prints them all.",
    fix="Print the few KAMAL_* variables you need by name.",
    insecure="#!/bin/sh\nprintenv | sort\n",
    secure="#!/bin/sh\necho \"$KAMAL_PERFORMER deployed $KAMAL_VERSION\"\n",
    family=FAMILY, example_path=HOOK,
)
def env_dump(rule: Rule, ctx: Context) -> Iterator[Finding]:
    yield from _grep(rule, ctx, DUMP, "prints the whole environment, secrets included")


@define(
    "KS514", Severity.MEDIUM, "Hook pipes a download into a shell",
    rationale="`curl ... | sh` runs whatever the server sends today, on your machine, with "
    "your secrets in the environment.",
    fix="Download a pinned version, verify its checksum, then run it.",
    insecure="#!/bin/sh\ncurl -fsSL https://example.com/install.sh | sh\n",
    secure="#!/bin/sh\n./bin/notify-deploy\n",
    family=FAMILY, example_path=HOOK,
)
def pipe_shell(rule: Rule, ctx: Context) -> Iterator[Finding]:
    yield from _grep(rule, ctx, PIPE_SHELL, "pipes a download straight into a shell")


@define(
    "KS515", Severity.MEDIUM, "Hook uses eval",
    rationale="eval re-parses text as code; with KAMAL_* values or command output in it, a "
    "crafted branch name or host list becomes a command.",
    fix="Call the command directly with quoted arguments.",
    insecure="#!/bin/sh\neval \"notify $KAMAL_PERFORMER\"\n",
    secure="#!/bin/sh\nnotify \"$KAMAL_PERFORMER\"\n",
    family=FAMILY, example_path=HOOK,
)
def uses_eval(rule: Rule, ctx: Context) -> Iterator[Finding]:
    yield from _grep(rule, ctx, EVAL, "eval turns data into code")


def unquoted(line: str) -> Iterator[int]:
    """Columns (0-based) of $KAMAL_* expansions that the shell would word-split.

    Tracks single and double quotes per ``$( ... )`` level; ``${KAMAL_X:+...}`` (the
    optional-argument idiom) and comments are left alone.
    """
    stack = [""]
    index = 0
    while index < len(line):
        step = _scan(line, index, stack)
        if step < 0:
            return
        if step == 0:
            yield index
            step = 1
        index += step


def _scan(line: str, index: int, stack: list[str]) -> int:
    """Advance the quote state by one token: its length, 0 for a hit, -1 at a comment."""
    char, quote = line[index], stack[-1]
    if quote == "'":
        stack[-1] = "" if char == "'" else quote
        return 1
    if char == "\\":
        return 2
    if line.startswith("$(", index):
        stack.append("")
        return 2
    if char == ")" and quote == "" and len(stack) > 1:
        stack.pop()
    elif char == '"':
        stack[-1] = "" if quote == '"' else '"'
    elif char == "'" and quote == "":
        stack[-1] = "'"
    elif char == "#" and quote == "" and len(stack) == 1 and (index == 0 or line[index - 1]
                                                                .isspace()):
        return -1
    elif quote == "" and (match := KAMAL_VAR.match(line, index)):
        return 1 if line.startswith(":+", match.end()) else 0
    return 1


@define(
    "KS516", Severity.LOW, "Hook expands $KAMAL_* without quotes",
    rationale="KAMAL_* values come from the command line and git (performer, version, hosts, "
    "roles); unquoted they are split and globbed, so a crafted value can add arguments.",
    fix="Quote every expansion: \"$KAMAL_HOSTS\".",
    insecure="#!/bin/sh\nnotify --version $KAMAL_VERSION\n",
    secure="#!/bin/sh\nnotify --version \"$KAMAL_VERSION\"\n",
    family=FAMILY, example_path=HOOK,
)
def unquoted_vars(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        for number, line in _lines(hook):
            for column in unquoted(line):
                yield rule.finding("unquoted KAMAL_* expansion", _at(hook, number, column + 1))


LEVELS = {"error": Severity.MEDIUM, "warning": Severity.LOW}


@define(
    "KS517", Severity.LOW, "ShellCheck finding in a hook",
    rationale="Hooks are shell scripts that run with secrets around; ShellCheck finds the "
    "quoting and error-handling bugs that turn into leaks or silent failures.",
    fix="Fix the ShellCheck finding (see https://www.shellcheck.net/wiki/SCnnnn).",
    insecure="#!/bin/bash\nfor h in $(echo $KAMAL_HOSTS | tr , ' '); do ssh $h uptime; done\n",
    secure="#!/bin/bash\nIFS=, read -ra hosts <<< \"$KAMAL_HOSTS\"\n"
    "for h in \"${hosts[@]}\"; do ssh \"$h\" uptime; done\n",
    family=FAMILY, example_path=HOOK,
    references=("https://www.shellcheck.net/",),
    also=((Severity.MEDIUM, "ShellCheck errors"), (Severity.INFO, "ShellCheck info and style")),
)
def shellcheck(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        for note in ctx.shellcheck(hook) or ():
            yield rule.finding(f"{note.code}: {note.message}",
                               _at(hook, note.line, note.column),
                               severity=LEVELS.get(note.level, Severity.INFO))


SHELL_ASSIGN = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s;&|]+)")


def _literal_secrets(line: str) -> Iterator[tuple[int, str, str]]:
    """(column, why, value) for each secret written literally in one line of a hook."""
    for name, pattern in VENDOR:
        for match in pattern.finditer(line):
            if vendor_match(match.group(0)) == name:
                yield match.start() + 1, name, match.group(0)
    for match in SHELL_ASSIGN.finditer(line):
        value = match.group(2).strip("\"'")
        if "$" in value or "`" in value or not _mixed(value):
            continue  # an expansion, or a word: hooks are full of NAME=word
        why = looks_secret(match.group(1), value)
        if why is not None and vendor_match(value) is None:
            yield match.start(2) + 1, why, value


def _mixed(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


@define(
    "KS518", Severity.HIGH, "Secret written literally in a hook",
    rationale="Hooks are committed with the project: a token typed into one is in the "
    "repository's history for anyone with read access, and survives every rotation of the "
    "secret it was copied from.",
    fix="Read it from the environment Kamal gives the hook (put it in .kamal/secrets and "
    "reference $NAME), then revoke the token that was committed.",
    insecure="#!/bin/sh\ncurl -H \"Authorization: token ghp_0123456789abcdefghijklmnopqrstuvwxyz\" "
    "https://api.github.com/\n",
    secure="#!/bin/sh\ncurl -H \"Authorization: token $GITHUB_TOKEN\" https://api.github.com/\n",
    family=FAMILY, example_path=HOOK,
)
def literal_secret(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        for number, line in enumerate(hook.text.splitlines(), start=1):  # comments too
            for column, why, value in _literal_secrets(line):
                yield rule.finding(f"a secret is written in the hook ({why})",
                                   _at(hook, number, column), evidence=redact(value))


def _root_reason(line: str) -> tuple[str, int] | None:
    login = ROOT_LOGIN.search(line)
    if login:
        return f"{login.group(1)} logs in to the hosts as root", login.start() + 1
    unit = SYSTEM_UNIT.search(line)
    if unit:
        return "installs or enables a system unit (needs root on the hosts)", unit.start() + 1
    return None


@define(
    "KS519", Severity.HIGH, "Hook reaches the hosts as root or installs system units",
    rationale="ssh.user keeps Kamal off root, but a hook that runs `ssh root@$KAMAL_HOSTS` or "
    "`scp ... root@host:/etc/systemd/system/` needs a root key on every server anyway: the "
    "deploy machine (and CI) can then do anything there, and the hook does it with every "
    "secret in its environment.",
    fix="Do host setup once, out of band (a provisioning tool), or as the deploy user with a "
    "narrow sudo rule; keep hooks to notifications and checks.",
    insecure="#!/bin/sh\nscp app.service root@\"$KAMAL_HOSTS\":/etc/systemd/system/\n"
    "ssh root@\"$KAMAL_HOSTS\" systemctl daemon-reload\n",
    secure="#!/bin/sh\necho \"deploying $KAMAL_VERSION to $KAMAL_HOSTS\"\n",
    family=FAMILY, example_path=HOOK,
)
def root_on_hosts(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for hook in ctx.project.hooks:
        for number, line in _lines(hook):
            found = _root_reason(line)
            if found:
                yield rule.finding(found[0], _at(hook, number, found[1]))


RULES: tuple[Rule, ...] = (not_executable, writable, xtrace, env_dump, pipe_shell, uses_eval,
                           unquoted_vars, shellcheck, literal_secret, root_on_hosts)
