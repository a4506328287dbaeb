"""One source of truth for severities: what `rules` lists is what findings carry (KS207)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kamal_secure.errors import ConfigError
from kamal_secure.report.model import Location, Severity
from kamal_secure.rules import docs
from kamal_secure.rules.registry import ALL_RULES, get
from testing.cli import Main
from testing.corpus import destinations, items, scan
from testing.project import CORPUS, write_project


def test_rules_lists_every_level_each_rule_emits(tmp_path: Path, main: Main) -> None:
    rows = json.loads(main(["rules", "--format", "json"], tmp_path).stdout)
    for row, rule in zip(rows, ALL_RULES, strict=True):
        assert row["id"] == rule.id
        assert row["severity"] == rule.severity.label
        assert row["severities"] == [level.label for level in rule.levels]
        page = docs.page(rule)
        assert all(f"**{level.label}**" in page for level in rule.levels), rule.id
    text = main(["rules"], tmp_path).stdout
    assert "KS207  high/medium/low " in text


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.id)
def test_a_rule_cannot_emit_a_level_it_does_not_declare(rule: object) -> None:
    assert isinstance(rule, type(ALL_RULES[0]))
    undeclared = [s for s in Severity if s not in rule.levels]
    for level in undeclared:
        with pytest.raises(ValueError, match="does not declare"):
            rule.finding("x", Location("f", 1, 1), severity=level)
    for level in rule.levels:
        assert rule.finding("x", Location("f", 1, 1), severity=level).severity == level


def test_ks207_emits_both_declared_levels(tmp_path: Path, main: Main) -> None:
    token = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz9Xq2LkW"  # an example, not a real secret
    write_project(tmp_path, {".kamal/secrets": f"RAILS_ENV=production\nTOKEN={token}\n"})
    run = main(["scan", "--offline", "--format", "json"], tmp_path)
    found = {(f["rule"], f["severity"]) for f in json.loads(run.stdout)["findings"]}
    assert {("KS207", "low"), ("KS207", "high")} <= found


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not beside checkout")
def test_corpus_findings_carry_declared_levels(tmp_path: Path) -> None:
    checked = 0
    for item in items():
        if item.kind == "other":
            continue
        for destination in destinations(item) if item.kind == "config" else [None]:
            result = scan(item, tmp_path, destination)
            if isinstance(result, ConfigError):
                continue
            for finding in result.findings:
                checked += 1
                assert finding.severity in get(finding.rule).levels, finding.rule
    assert checked > 100, checked  # the corpus has findings to check
