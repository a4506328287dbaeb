"""The shipped JSON schemas, and their violations mapped to rule ids.

Each schema is loaded and its validator built once per process. Every
constraint carries ``"x-rule": "KSnnn"`` on its own subschema (or an enclosing
one): a violation belongs to the innermost tagged subschema on its schema path,
followed through local ``$ref``s, so one violation is one finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from kamal_secure.config import yamlsafe
from kamal_secure.resources import schema_text

SECURITY = "deploy.security.schema.json"
STRUCTURE = "kamal2.schema.json"


@dataclass(frozen=True)
class Violation:
    rule: str
    path: yamlsafe.Path  # the value at fault (for an unknown key: the key itself)
    message: str
    key: str | None = None  # set for unknown keys


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text(name))
    return loaded


@cache
def validator(name: str) -> Any:
    """Built once. The schemas are checked against the metaschema by the tests, not here:
    that check alone costs more than a whole scan."""
    root = schema(name)
    return jsonschema.validators.validator_for(root)(root)


def violations(name: str, data: Any) -> Iterator[Violation]:
    root = schema(name)
    for error in validator(name).iter_errors(data):
        yield from _flatten(error, root)


def _flatten(error: ValidationError, root: dict[str, Any]) -> Iterator[Violation]:
    path = tuple(error.absolute_path)
    rule, message = rule_of(error, root)
    sub = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sub.get("properties", {})
        patterns = sub.get("patternProperties", {})
        for key in error.instance:
            if key not in allowed and not _matches(patterns, key):
                yield Violation(rule, (*path, key), f"unknown key {key}", key)
        return
    # Never error.message: it quotes the value, which may be a secret.
    yield Violation(rule, path, message or f"fails the schema's {error.validator} constraint")


TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
              "integer": "a whole number", "number": "a number", "boolean": "true or false",
              "null": "empty"}


def describe(error: ValidationError) -> str:
    """A schema error in our own words (jsonschema's wording changes between releases and
    quotes the value, which may be a secret). Names keys and allowed choices, never values."""
    rule, wanted = error.validator, error.validator_value
    if rule == "required" and isinstance(error.instance, dict) and isinstance(wanted, list):
        missing = [key for key in wanted if key not in error.instance]
        return "missing required key " + ", ".join(map(str, missing))
    if rule == "type":
        kinds = wanted if isinstance(wanted, list) else [wanted]
        return "must be " + " or ".join(TYPE_WORDS.get(str(k), str(k)) for k in kinds)
    if rule in ("enum", "const"):
        choices = wanted if isinstance(wanted, list) else [wanted]
        return "must be one of " + ", ".join(map(str, choices))
    if rule == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        unknown = sorted(str(key) for key in error.instance if key not in allowed)
        return "unknown key " + ", ".join(unknown)
    return f"does not meet the schema's {rule} constraint"


def _matches(patterns: dict[str, Any], key: str) -> bool:
    import re

    return any(re.search(pattern, key) for pattern in patterns)


def rule_of(error: ValidationError, root: dict[str, Any]) -> tuple[str, str | None]:
    """x-rule and x-message of the innermost tagged subschema on the error's schema path."""
    node: Any = root
    rule = str(root.get("x-rule", "KS000"))
    message: str | None = None
    for step in error.absolute_schema_path:
        while isinstance(node, dict) and step not in node and isinstance(node.get("$ref"), str):
            node = _resolve(root, node["$ref"])  # a $ref'd definition's own tag counts too
            if isinstance(node, dict) and "x-rule" in node:
                rule, message = str(node["x-rule"]), node.get("x-message")
        node = _step(root, node, step)
        if node is None:
            break
        if isinstance(node, dict) and "x-rule" in node:
            rule = str(node["x-rule"])
            message = node.get("x-message")
    return rule, message


def _step(root: dict[str, Any], node: Any, step: str | int) -> Any:
    """One schema-path step; jsonschema leaves ``$ref`` out of the path, so follow it here."""
    while isinstance(node, dict) and step not in node and isinstance(node.get("$ref"), str):
        node = _resolve(root, node["$ref"])
    if isinstance(node, dict):
        return node.get(step) if isinstance(step, str) else None
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return None


def _resolve(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node
