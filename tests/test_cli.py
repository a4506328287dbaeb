"""Our own commands, bad input and the cost of the passthrough path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from kamal_secure.resources import schema_text
from testing.cli import REPO
from testing.project import SECURE_CONFIG
from testing.standin import run_ks


def test_help_and_version(tmp_path: Path, record: Path) -> None:
    run = run_ks(["--help"], tmp_path, [], record)
    assert run.code == 0
    assert "Exit codes:" in run.stdout
    assert "-h/--hosts (not" in run.stdout
    version = run_ks(["--version"], tmp_path, [], record)
    assert version.stdout.startswith("kamal-secure ")


def test_rules_and_explain_share_metadata(tmp_path: Path, record: Path) -> None:
    rules = run_ks(["rules", "--format", "json"], tmp_path, [], record)
    rows = json.loads(rules.stdout)
    assert {"KS101", "KS102", "KS103", "KS104"} <= {r["id"] for r in rows}
    for row in rows:
        page = run_ks(["explain", row["id"].lower()], tmp_path, [], record)
        assert page.code == 0
        assert page.stdout.startswith(f"# {row['id']}: {row['title']}")
        assert f"Severity: **{row['severity']}**" in page.stdout
    unknown = run_ks(["explain", "KS999"], tmp_path, [], record)
    assert unknown.code == 2
    assert "unknown rule" in unknown.stderr


def _validate(report: dict[str, object]) -> None:
    schema = json.loads(schema_text("report.schema.json"))
    jsonschema.Draft202012Validator(schema).validate(report)


def test_scan_json_has_the_same_shape_with_and_without_findings(project: Path,
                                                                record: Path) -> None:
    bad = run_ks(["scan", "--offline", "--format", "json"], project, [], record)
    assert bad.code == 1
    report = json.loads(bad.stdout)
    _validate(report)
    assert {f["rule"] for f in report["findings"]} >= {"KS100"}
    assert report["summary"]["exit_code"] == 1
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    good = run_ks(["scan", "--offline", "--format", "json"], project, [], record)
    clean = json.loads(good.stdout)
    _validate(clean)
    assert good.code == 0
    assert set(clean) == set(report)
    assert clean["summary"]["by_severity"]["high"] == 0


def test_fail_on_threshold(project: Path, record: Path) -> None:
    (project / "config" / "deploy.yml").write_text(
        SECURE_CONFIG.replace("  keys_only: true\n", ""))
    assert run_ks(["scan", "--offline"], project, [], record).code == 0
    assert run_ks(["scan", "--offline", "--fail-on", "medium"], project, [], record).code == 1
    env_run = run_ks(["scan", "--offline"], project, [], record,
                     env={"KAMAL_SECURE_FAIL_ON": "medium"})
    assert env_run.code == 1
    bad = run_ks(["scan", "--fail-on", "severe"], project, [], record)
    assert bad.code == 2
    assert "unknown severity" in bad.stderr


def _expect_error(run_args: list[str], cwd: Path, standin: Path, record: Path,
                  text: str) -> None:
    run = run_ks(run_args, cwd, [standin], record)
    assert run.code == 2, run.stderr
    assert run.record is None, "kamal must not start when the gate cannot decide"
    assert text in run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2


def test_missing_config_for_gated_command(tmp_path: Path, standin_dir: Path,
                                          record: Path) -> None:
    _expect_error(["deploy"], tmp_path, standin_dir, record, "config/deploy.yml: file not found")


def test_missing_destination_file(project: Path, standin_dir: Path, record: Path) -> None:
    _expect_error(["deploy", "-d", "nowhere"], project, standin_dir, record,
                  "config/deploy.nowhere.yml not found")


def test_config_that_is_a_directory(tmp_path: Path, standin_dir: Path, record: Path) -> None:
    (tmp_path / "config" / "deploy.yml").mkdir(parents=True)
    _expect_error(["deploy"], tmp_path, standin_dir, record, "is a directory")


def test_config_not_utf8(project: Path, standin_dir: Path, record: Path) -> None:
    (project / "config" / "deploy.yml").write_bytes(b"service: caf\xe9\n")
    _expect_error(["deploy"], project, standin_dir, record, "deploy.yml:1: not valid UTF-8")


def test_config_bad_yaml_names_the_line(project: Path, standin_dir: Path,
                                        record: Path) -> None:
    (project / "config" / "deploy.yml").write_text("service: a\nservers: [\n  x: : y\n")
    run = run_ks(["deploy"], project, [standin_dir], record)
    assert run.code == 2
    assert run.record is None
    assert "config/deploy.yml:" in run.stderr


def test_unknown_word_with_broken_config_fails_closed(project: Path, standin_dir: Path,
                                                      record: Path) -> None:
    (project / "config" / "deploy.yml").write_text("aliases: [\n")
    run = run_ks(["ship"], project, [standin_dir], record)
    assert run.code == 2
    assert run.record is None


def test_non_utf8_destination_is_refused(project: Path, standin_dir: Path,
                                         record: Path) -> None:
    run = run_ks([b"deploy", b"-d", b"st\xffg"], project, [standin_dir], record)
    assert run.code == 2
    assert run.record is None
    assert "not valid UTF-8" in run.stderr


def test_unknown_option_of_ours_is_usage_error(tmp_path: Path, record: Path) -> None:
    run = run_ks(["scan", "--frobnicate"], tmp_path, [], record)
    assert run.code == 2
    assert "unrecognized arguments" in run.stderr
    assert "Traceback" not in run.stderr


def test_gate_works_outside_a_git_repository(project: Path, standin_dir: Path,
                                             record: Path) -> None:
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    assert not (project / ".git").exists()
    assert run_ks(["deploy"], project, [standin_dir], record).code == 0


HEAVY = ("yaml", "rich", "jsonschema", "paramiko", "sh", "ruamel", "cryptography")


@pytest.mark.parametrize("args", [["version"], ["app", "logs", "-f"], ["config", "-d", "x"]])
def test_passthrough_imports_nothing_heavy(args: list[str]) -> None:
    code = (
        "import sys\n"
        "import kamal_secure.cli as cli\n"
        "cli.exec_kamal = lambda *a, **k: None\n"
        f"cli.route({args!r})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
