"""Rule pages under docs/rules are generated from the rule metadata and kept current."""

from __future__ import annotations

from kamal_secure.resources import data_dir
from kamal_secure.rules.docs import expected_pages
from kamal_secure.rules.registry import ALL_RULES


def test_every_rule_has_a_current_page() -> None:
    directory = data_dir("rule_docs")
    pages = expected_pages()
    on_disk = {p.name for p in directory.glob("KS*.md")}
    assert on_disk == set(pages), "run `make docs`"
    for name, content in pages.items():
        assert (directory / name).read_text() == content, f"{name} is stale: run `make docs`"


def test_rule_metadata_is_complete_and_ids_unique() -> None:
    ids = [rule.id for rule in ALL_RULES]
    assert len(ids) == len(set(ids))
    for rule in ALL_RULES:
        assert rule.id.startswith("KS")
        assert len(rule.id) == 5
        assert rule.id[2:].isdigit()
        for text in (rule.title, rule.rationale, rule.fix, rule.insecure, rule.secure):
            assert text.strip(), f"{rule.id} lacks metadata"
