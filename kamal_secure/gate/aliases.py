"""Kamal ``aliases:``: any word can stand for any kamal command, ``deploy`` included.

Kamal only consults aliases for words that are not kamal commands, then runs
``Shellwords.split(alias) + ARGV[1..]`` through its parser again.
"""

from __future__ import annotations

import shlex

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.load import Project, load_project
from kamal_secure.errors import ConfigError
from kamal_secure.gate.kamal import MAX_ALIAS_DEPTH, Invocation, classify


def aliases_of(project: Project) -> dict[str, object]:
    aliases = project.get("aliases")
    return aliases if isinstance(aliases, dict) else {}


def expand(args: list[str], aliases: dict[str, object]) -> list[str] | None:
    """The argv an alias resolves to, or None when ``args[0]`` is no alias."""
    if not args or args[0] not in aliases:
        return None
    value = aliases[args[0]]
    if not isinstance(value, str):
        raise ConfigError(f"aliases.{args[0]}: must be a string command")
    if is_dynamic(value):
        return ["deploy"]  # rendered by ERB at run time: cannot tell, so gate it
    try:
        return [*shlex.split(value), *args[1:]]
    except ValueError as err:
        raise ConfigError(f"aliases.{args[0]}: cannot split {value!r}: {err}") from None


def resolve_kind(inv: Invocation) -> str:
    """Classify an unknown command word through the config's aliases."""
    try:
        project = load_project(inv.config_file, inv.destination)
    except ConfigError:
        if inv.destination is None and not _exists(inv.config_file):
            return "pass"  # no config: kamal itself reports the unknown command
        raise
    aliases = aliases_of(project)
    args = inv.args
    for _ in range(MAX_ALIAS_DEPTH):
        expanded = expand(args, aliases)
        if expanded is None:
            return "pass"
        args = expanded
        kind = classify(Invocation(args))
        if kind != "alias":
            return kind
    raise ConfigError(f"aliases: {inv.args[0]!r} does not resolve within {MAX_ALIAS_DEPTH} steps")


def _exists(config_file: str) -> bool:
    from pathlib import Path

    return Path(config_file).expanduser().exists()
