"""The explicit registry of every rule: no plugin scanning."""

from __future__ import annotations

from kamal_secure.errors import UsageError
from kamal_secure.rules import (
    cmdline,
    containers,
    drift,
    exposure,
    host,
    keys,
    loader,
    meta,
    secrets,
    settings,
    ssh,
    structure,
)
from kamal_secure.rules import hook_scripts as hooks
from kamal_secure.rules.base import Rule

ALL_RULES: tuple[Rule, ...] = (
    *loader.RULES,
    *structure.RULES,
    *ssh.RULES,
    *keys.RULES,
    *secrets.RULES,
    *cmdline.RULES,
    *containers.RULES,
    *exposure.RULES,
    *settings.RULES,
    *hooks.RULES,
    *host.RULES,
    *meta.RULES,
    *drift.RULES,  # last: SARIF rule indexes of the rules before it stay as they were
)
_BY_ID = {rule.id: rule for rule in ALL_RULES}


def get(rule_id: str) -> Rule:
    rule = _BY_ID.get(rule_id.strip().upper())
    if rule is None:
        raise UsageError(f"unknown rule {rule_id!r}", hint="`kamal-secure rules` lists them all")
    return rule


def known(rule_id: str) -> bool:
    return rule_id in _BY_ID
