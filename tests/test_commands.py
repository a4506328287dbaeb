"""`rules` and `explain` read the same metadata as the docs; `scan` JSON has every field."""

from __future__ import annotations

import json
from pathlib import Path

from kamal_secure.rules import docs
from kamal_secure.rules.registry import ALL_RULES, get
from testing.cli import Main
from testing.project import write_project


def test_rules_lists_every_rule(tmp_path: Path, main: Main) -> None:
    run = main(["rules", "--format", "json"], tmp_path)
    assert run.code == 0
    assert [row["id"] for row in json.loads(run.stdout)] == [r.id for r in ALL_RULES]


def test_explain_prints_the_doc_page(tmp_path: Path, main: Main) -> None:
    run = main(["explain", "ks401"], tmp_path)
    assert run.code == 0
    assert run.stdout == docs.page(get("KS401"))


def test_scan_json_points_at_file_line_column(tmp_path: Path, main: Main) -> None:
    write_project(tmp_path, {"config/deploy.yml": "service: shop\nimage: acme/shop\n"
                             "accessories:\n  db:\n    image: postgres:16.4\n"
                             "    host: 203.0.113.10\n    port: 5432\n"})
    run = main(["scan", "--offline", "--format", "json"], tmp_path)
    assert run.code == 1
    found = {(f["rule"], f["file"], f["line"], f["column"], f["path"])
             for f in json.loads(run.stdout)["findings"]}
    assert ("KS401", "config/deploy.yml", 7, 5, "accessories.db.port") in found
