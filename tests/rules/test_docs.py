"""Docs pages and the security schema agree with the rules' metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from kamal_secure.rules import docs
from kamal_secure.rules.registry import ALL_RULES
from kamal_secure.schemas import SECURITY, STRUCTURE, schema
from testing.cli import REPO


def test_rule_pages_are_up_to_date() -> None:
    folder = REPO / "docs" / "rules"
    want = docs.pages(ALL_RULES)
    have = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.md")}
    assert len(want) > len(ALL_RULES) > 0  # a page per rule and the index
    stale = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
    assert stale == [], "run `make docs` and commit docs/rules"


def test_rule_ids_are_unique_and_complete() -> None:
    ids = [r.id for r in ALL_RULES]
    assert ids
    assert len(ids) == len(set(ids))
    for rule in ALL_RULES:
        assert all((rule.title, rule.rationale, rule.fix, rule.insecure, rule.secure)), rule.id


def _tags(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "x-rule" in node:
            yield str(node["x-rule"])
        for value in node.values():
            yield from _tags(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tags(value)


def test_schema_rules_and_registry_agree() -> None:
    tagged = set(_tags(schema(SECURITY)))
    by_schema = {r.id for r in ALL_RULES if r.kind == "schema"}
    assert tagged == by_schema
    assert set(_tags(schema(STRUCTURE))) == {"KS003", "KS008"}


def test_schemas_are_valid_2020_12() -> None:
    for name in (SECURITY, STRUCTURE):
        text = (REPO / "kamal_secure" / "schema" / name).read_text(encoding="utf-8")
        assert json.loads(text)["$schema"].endswith("2020-12/schema")
        Draft202012Validator.check_schema(schema(name))


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            if key == "patternProperties" and isinstance(value, dict):
                yield from value
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_schema_regexes_are_portable() -> None:
    """ECMA 262 has no inline flags such as (?i): other validators reject the schema."""
    for name in (SECURITY, STRUCTURE):
        for pattern in _patterns(schema(name)):
            assert "(?i" not in pattern
            assert "(?P" not in pattern
