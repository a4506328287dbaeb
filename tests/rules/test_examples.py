"""Each rule's documented insecure example triggers it; the secure one does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kamal_secure.rules.base import PROJECT_KINDS, Rule
from kamal_secure.rules.registry import ALL_RULES
from testing.project import ids, scan, write_project

# File modes cannot be written in an example; their fixtures cover them.
MODE_RULES = {"KS510", "KS511"}
# The project rules (kinds config and schema); key files and hosts have their own harnesses.
CHECKED = [r for r in ALL_RULES if r.kind in PROJECT_KINDS and r.id not in MODE_RULES]


def _findings(rule: Rule, text: str, root: Path) -> set[str]:
    write_project(root, {rule.example_path: text})
    return ids(scan(root))


@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: r.id)
def test_insecure_example_triggers(rule: Rule, tmp_path: Path) -> None:
    if rule.id == "KS517" and shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (make deps installs it)")
    assert rule.id in _findings(rule, rule.insecure, tmp_path)


@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: r.id)
def test_secure_example_is_clean(rule: Rule, tmp_path: Path) -> None:
    assert rule.id not in _findings(rule, rule.secure, tmp_path)
