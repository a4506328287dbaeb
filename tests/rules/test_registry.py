"""One registry: every Rule object anywhere in the package is in registry.ALL_RULES, once,
and its kind matches the check it carries."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import kamal_secure
from kamal_secure.report.model import Severity
from kamal_secure.rules.base import KINDS, Rule, define, schema_check
from kamal_secure.rules.registry import ALL_RULES


def every_rule_object() -> dict[int, Rule]:
    """Rule objects reachable from any module's globals (directly or in a tuple/list/dict)."""
    found: dict[int, Rule] = {}
    for info in pkgutil.walk_packages(kamal_secure.__path__, "kamal_secure."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            items = value.values() if isinstance(value, dict) else \
                value if isinstance(value, tuple | list) else (value,)
            for item in items:
                if isinstance(item, Rule):
                    found[id(item)] = item
    return found


def test_every_rule_object_is_registered_once() -> None:
    found = every_rule_object()
    assert len(found) >= len(ALL_RULES) > 100
    registered = {id(rule) for rule in ALL_RULES}
    assert [r.id for r in found.values() if id(r) not in registered] == []
    ids = [rule.id for rule in ALL_RULES]
    assert len(ids) == len(set(ids))


def test_every_kind_is_used_and_matches_its_check() -> None:
    assert {rule.kind for rule in ALL_RULES} == set(KINDS)
    for rule in ALL_RULES:
        assert (rule.check is not None) == (rule.kind in ("config", "schema", "keys")), rule.id
        assert (rule.host_check is not None) == (rule.kind == "host"), rule.id


def test_a_rule_with_the_wrong_checks_is_refused() -> None:
    with pytest.raises(ValueError, match="wrong checks"):
        Rule("KS000", Severity.LOW, "t", "r", "f", "i", "s", "x", None, kind="config")
    with pytest.raises(ValueError, match="wrong checks"):
        Rule("KS000", Severity.LOW, "t", "r", "f", "i", "s", "x", schema_check, kind="raised")
    made = define("KS000", Severity.LOW, "t", rationale="r", fix="f", insecure="i",
                  secure="s", family="x")(schema_check)
    assert made.kind == "schema"
