"""`explain` prints the published rule page; `scan` JSON has every field."""

from __future__ import annotations

import json
from pathlib import Path

from kamal_secure.rules.registry import get
from testing.cli import REPO, Main
from testing.project import write_project


def test_explain_prints_the_published_page(tmp_path: Path, main: Main) -> None:
    """What `explain` prints is the page in docs/rules (which test_docs keeps in step with the
    metadata), whatever the case of the id."""
    rule = get("KS401")
    run = main(["explain", "ks401"], tmp_path)
    assert run.code == 0
    assert run.stdout == (REPO / "docs" / "rules" / "KS401.md").read_text(encoding="utf-8")
    assert run.stdout.startswith(f"# KS401: {rule.title}\n")
    assert f"Severity: **{rule.severity.label}**" in run.stdout
    assert rule.fix.strip().splitlines()[0] in run.stdout


def test_scan_json_points_at_file_line_column(tmp_path: Path, main: Main) -> None:
    write_project(tmp_path, {"config/deploy.yml": "service: shop\nimage: acme/shop\n"
                             "accessories:\n  db:\n    image: postgres:16.4\n"
                             "    host: 203.0.113.10\n    port: 5432\n"})
    run = main(["scan", "--offline", "--format", "json"], tmp_path)
    assert run.code == 1
    found = {(f["rule"], f["file"], f["line"], f["column"], f["path"])
             for f in json.loads(run.stdout)["findings"]}
    assert ("KS401", "config/deploy.yml", 7, 5, "accessories.db.port") in found
