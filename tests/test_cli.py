"""Our own commands, bad input and the cost of the passthrough path.

Most tests run ``main`` in this process (the ``main`` fixture): the process boundary is not what
they test. A test that reaches kamal (exec) or measures imports starts a process.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest

from kamal_secure import cli
from kamal_secure.commands import MODULES
from kamal_secure.errors import (
    EXIT_CLEAN,
    EXIT_CODES,
    EXIT_DECLINED,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    EXIT_INTERNAL,
    EXIT_USAGE,
    InternalError,
    KamalSecureError,
    UsageError,
)
from kamal_secure.gate.kamal import OWN_COMMAND_TABLE, OWN_COMMANDS
from kamal_secure.resources import schema_text
from testing.cli import REPO, Main
from testing.project import SECURE_CONFIG
from testing.standin import run_ks

OFFLINE = {"KAMAL_SECURE_OFFLINE": "1"}


def on_path(*dirs: Path) -> dict[str, str]:
    """Only ``dirs`` (and the system's) on PATH: which kamal the gate would find."""
    return {**OFFLINE, "PATH": os.pathsep.join([*map(str, dirs), "/usr/bin", "/bin"])}


def test_help_and_version(tmp_path: Path, main: Main) -> None:
    run = main(["--help"], tmp_path)
    assert run.code == 0
    assert "Exit codes:" in run.stdout
    assert "-h/--hosts (not" in run.stdout
    version = main(["--version"], tmp_path)
    assert version.code == 0
    assert version.stdout.startswith("kamal-secure ")


def test_rules_and_an_unknown_rule(tmp_path: Path, main: Main) -> None:
    rules = main(["rules", "--format", "json"], tmp_path)
    assert rules.code == 0
    assert {"KS101", "KS102", "KS103", "KS104"} <= {r["id"] for r in json.loads(rules.stdout)}
    unknown = main(["explain", "KS999"], tmp_path)
    assert unknown.code == 2
    assert "unknown rule" in unknown.stderr


def _validate(report: dict[str, object]) -> None:
    schema = json.loads(schema_text("report.schema.json"))
    jsonschema.Draft202012Validator(schema).validate(report)


def test_scan_json_has_the_same_shape_with_and_without_findings(project: Path,
                                                                main: Main) -> None:
    bad = main(["scan", "--offline", "--format", "json"], project)
    assert bad.code == 1
    report = json.loads(bad.stdout)
    _validate(report)
    assert {f["rule"] for f in report["findings"]} >= {"KS100"}
    assert report["summary"]["exit_code"] == 1
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    good = main(["scan", "--offline", "--format", "json"], project)
    clean = json.loads(good.stdout)
    _validate(clean)
    assert good.code == 0
    assert set(clean) == set(report)
    assert clean["summary"]["by_severity"]["high"] == 0


def test_fail_on_threshold(project: Path, main: Main) -> None:
    (project / "config" / "deploy.yml").write_text(
        SECURE_CONFIG.replace("  keys_only: true\n", ""))
    assert main(["scan", "--offline"], project).code == 0
    assert main(["scan", "--offline", "--fail-on", "medium"], project).code == 1
    assert main(["scan", "--offline"], project, {"KAMAL_SECURE_FAIL_ON": "medium"}).code == 1
    bad = main(["scan", "--fail-on", "severe"], project)
    assert bad.code == 2
    assert "unknown severity" in bad.stderr


def _expect_error(main: Main, args: list[str], cwd: Path, standin: Path, text: str) -> None:
    """The gate cannot decide: exit 2, one short message, and kamal is never started
    (the ``main`` fixture refuses exec: reaching kamal fails the test)."""
    run = main(args, cwd, on_path(standin))
    assert run.code == 2, run.stderr
    assert text in run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2


def test_missing_config_for_gated_command(tmp_path: Path, standin_dir: Path, main: Main) -> None:
    _expect_error(main, ["deploy"], tmp_path, standin_dir, "config/deploy.yml: file not found")


def test_missing_destination_file(project: Path, standin_dir: Path, main: Main) -> None:
    _expect_error(main, ["deploy", "-d", "nowhere"], project, standin_dir,
                  "config/deploy.nowhere.yml not found")


def test_config_that_is_a_directory(tmp_path: Path, standin_dir: Path, main: Main) -> None:
    (tmp_path / "config" / "deploy.yml").mkdir(parents=True)
    _expect_error(main, ["deploy"], tmp_path, standin_dir, "is a directory")


def test_config_not_utf8(project: Path, standin_dir: Path, main: Main) -> None:
    (project / "config" / "deploy.yml").write_bytes(b"service: caf\xe9\n")
    _expect_error(main, ["deploy"], project, standin_dir, "deploy.yml:1: not valid UTF-8")


def test_config_bad_yaml_names_the_line(project: Path, standin_dir: Path, main: Main) -> None:
    (project / "config" / "deploy.yml").write_text("service: a\nservers: [\n  x: : y\n")
    _expect_error(main, ["deploy"], project, standin_dir, "config/deploy.yml:")


def test_unknown_word_with_broken_config_fails_closed(project: Path, standin_dir: Path,
                                                      main: Main) -> None:
    (project / "config" / "deploy.yml").write_text("aliases: [\n")
    run = main(["ship"], project, on_path(standin_dir))
    assert run.code == 2, run.stderr


def test_non_utf8_destination_is_refused(project: Path, standin_dir: Path, main: Main) -> None:
    # as Python hands a non-UTF-8 argv to main: surrogate-escaped
    destination = os.fsdecode(b"st\xffg")
    _expect_error(main, ["deploy", "-d", destination], project, standin_dir, "not valid UTF-8")


def test_unknown_option_of_ours_is_usage_error(tmp_path: Path, main: Main) -> None:
    run = main(["scan", "--frobnicate"], tmp_path)
    assert run.code == 2
    assert "unrecognized arguments" in run.stderr
    assert "Traceback" not in run.stderr


def test_gate_works_outside_a_git_repository(project: Path, standin_dir: Path,
                                             record: Path) -> None:
    """Reaches kamal (exec): a process of its own."""
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    assert not (project / ".git").exists()
    run = run_ks(["deploy"], project, [standin_dir], record)
    assert run.code == 0, run.stderr
    assert run.argv == [b"deploy"]


HEAVY = ("yaml", "rich", "jsonschema", "paramiko", "sh", "ruamel", "cryptography")


@pytest.mark.parametrize("args", [["version"], ["app", "logs", "-f"], ["config", "-d", "x"]])
def test_passthrough_imports_nothing_heavy(args: list[str]) -> None:
    """What a fresh interpreter imports: a process of its own."""
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


def test_exit_codes_in_help_and_readme_are_the_named_ones(tmp_path: Path, record: Path) -> None:
    help_text = run_ks(["--help"], tmp_path, [], record).stdout
    listed = help_text.split("Exit codes:\n", 1)[1]
    readme = (REPO / "README.md").read_text()
    for code, meaning in EXIT_CODES:
        assert f"  {code}  {meaning.replace(chr(10), chr(10) + ' ' * 5)}\n" in listed
        assert f"| {code} | {meaning.replace(chr(10), ' ')} |" in readme
    assert (EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE) == (0, 1, 2, 3)


def test_an_internal_error_is_its_own_error_with_its_own_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import kamal_secure.commands

    def broken(name: str, args: list[str]) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(kamal_secure.commands, "dispatch", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # read TMPDIR again
    try:
        code = cli.main(["rules"])
    finally:
        tempfile.tempdir = None
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL == InternalError.exit_code
    assert issubclass(InternalError, KamalSecureError)
    assert not issubclass(InternalError, UsageError)
    assert "kamal-secure: error: internal error (RuntimeError); details in " in err
    logs = list(tmp_path.glob("kamal-secure-crash-*.log"))
    assert len(logs) == 1
    assert "RuntimeError: a bug" in logs[0].read_text()


def test_rotate_key_not_confirmed_exits_declined_and_changes_nothing(
        project: Path, record: Path) -> None:
    config = project / "config" / "deploy.yml"
    config.write_text(SECURE_CONFIG)
    run = run_ks(["rotate-key"], project, [], record)  # stdin is not a terminal, no --yes
    assert run.code == EXIT_DECLINED
    assert "pass --yes" in run.stderr
    assert config.read_text() == SECURE_CONFIG
    assert not (project / ".kamal").exists()


def test_help_lists_exactly_the_own_command_table(tmp_path: Path, record: Path) -> None:
    help_text = run_ks(["--help"], tmp_path, [], record).stdout
    usage = help_text.split("Usage:\n", 1)[1].split("\n\n", 1)[0]
    words = [line.split()[1] for line in usage.splitlines()
             if line.startswith("  kamal-secure ")]
    assert words[0] == "KAMAL-COMMAND"
    assert words[-1] == "--help"
    listed = [word for word, _, shown in OWN_COMMAND_TABLE if shown is not None]
    assert words[1:-1] == listed
    assert set(OWN_COMMANDS) - set(listed) == {"hook"}  # run by the hook scripts only
    assert list(MODULES) == list(OWN_COMMANDS)
    for module in MODULES.values():
        assert callable(importlib.import_module(module).run)


def test_a_bad_baseline_variable_is_named_as_the_variable(project: Path, standin_dir: Path,
                                                          record: Path) -> None:
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    run = run_ks(["deploy"], project, [standin_dir], record,
                 env={"KAMAL_SECURE_BASELINE": "nope.json"})
    assert run.code == EXIT_USAGE
    assert "kamal-secure: error: KAMAL_SECURE_BASELINE nope.json: file not found" in run.stderr
    assert "--baseline" not in run.stderr
    assert run.record is None  # kamal never ran
