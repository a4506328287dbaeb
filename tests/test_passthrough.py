"""The wrapper through a real process: passthrough is byte-exact, gating stops kamal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testing.cli import REPO, clean_env
from testing.project import SECURE_CONFIG
from testing.standin import run_ks

PASSTHROUGH = [
    ["version"],
    ["help"],
    ["help", "deploy"],
    [],
    ["config"],
    ["config", "-d", "staging"],
    ["-d", "staging", "config"],
    ["details", "-h", "1.2.3.4"],
    ["details", "--hosts=1.2.3.4,5.6.7.8", "-r", "web"],
    ["audit", "-q"],
    ["docs", "ssh"],
    ["app", "logs", "-f", "--lines", "100"],
    ["app", "logs", "--grep", "it's \"quoted\" $(not run) `nope`"],
    ["app", "details", "-v"],
    ["app", "containers"],
    ["app", "version"],
    ["lock", "status"],
    ["accessory", "logs", "db", "--since", "1h"],
    ["proxy", "details"],
    ["secrets", "print"],
    ["secrets", "fetch", "--adapter", "1password", "--account", "x", "--", "KEY one"],
    ["build", "details"],
    ["init"],
    ["--version=abc123", "app", "images"],
    ["version", "", " ", "ünïcødé ☃", "a\nb", "--", "-h"],
]
# Not exact read-only forms: only Kamal itself could tell what they mean. With a kamal that
# cannot be guarded (this Python stand-in), the fallback model refuses them, kamal unstarted.
UNRESOLVABLE = [
    ["notakamalcommand", "--flag"],
    ["dep"],
    ["ser", "exec", "whoami"],
    ["-d", "", "deploy"],
    ["-cd", "x", "deploy"],
    ["deploy", "--no-destination"],
]


@pytest.mark.parametrize("args", PASSTHROUGH, ids=lambda a: " ".join(a) or "(none)")
def test_passthrough_is_byte_exact(args: list[str], tmp_path: Path, standin_dir: Path,
                                   record: Path) -> None:
    run = run_ks(args, tmp_path, [standin_dir], record)
    assert run.code == 0, run.stderr
    assert run.argv == [a.encode() for a in args]
    assert run.record is not None
    assert run.record["cwd"] == str(tmp_path)


def test_non_utf8_argument_passes_through_exactly(tmp_path: Path, standin_dir: Path,
                                                   record: Path) -> None:
    raw = [b"app", b"logs", b"--grep", b"\xff\xfe caf\xe9"]
    run = run_ks(raw, tmp_path, [standin_dir], record)
    assert run.argv == raw


def test_environment_reaches_kamal(tmp_path: Path, standin_dir: Path, record: Path) -> None:
    run = run_ks(["version"], tmp_path, [standin_dir], record, env={"MY_SECRET_X": "v1"})
    assert run.record is not None
    env = run.record["env"]
    assert isinstance(env, dict)
    assert env["MY_SECRET_X"] == "v1"


def test_exit_status_and_stdin_pass_through(tmp_path: Path, standin_dir: Path,
                                            record: Path) -> None:
    run = run_ks(["app", "logs"], tmp_path, [standin_dir], record,
                 env={"KAMAL_STANDIN_EXIT": "7", "KAMAL_STANDIN_READ": "1"}, stdin="hello\n")
    assert run.code == 7
    assert run.stdout == "stand-in:hello\n"


GATED = [
    ["deploy"],
    ["setup", "-P"],
    ["redeploy"],
    ["rollback", "abc"],
    ["remove", "-y"],
    ["app", "boot"],
    ["app", "exec", "-i", "bash"],
    ["server", "exec", "whoami"],
    ["accessory", "boot", "db"],
    ["proxy", "reboot"],
    ["prune", "all"],
    ["registry", "login"],
    ["lock", "release"],
    ["build", "push"],
    ["-d", "secure", "deploy"],
    ["deploy", "--help"],
    ["ship"],
    ["ship2", "-d", "secure"],
    ["app", "brand-new-subcommand"],
]


@pytest.mark.parametrize("args", GATED, ids=" ".join)
def test_gated_command_with_failing_config_never_starts_kamal(
    args: list[str], project: Path, standin_dir: Path, record: Path
) -> None:
    run = run_ks(args, project, [standin_dir], record)
    assert run.code == 1, run.stderr
    assert run.record is None
    assert "KS100" in run.stderr
    assert "refused to run" in run.stderr


def test_alias_to_read_only_command_passes(project: Path, standin_dir: Path,
                                           record: Path) -> None:
    run = run_ks(["tail"], project, [standin_dir], record)
    assert run.code == 0
    assert run.argv == [b"tail"]


def test_gated_command_with_clean_config_execs_kamal(project: Path, standin_dir: Path,
                                                    record: Path) -> None:
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    args = ["deploy", "-d", "secure", "--version=v1", "-h", "127.0.0.1"]
    run = run_ks(args, project, [standin_dir], record)
    assert run.code == 0, run.stderr
    assert run.argv == [a.encode() for a in args]


def test_break_glass_runs_kamal_and_logs(project: Path, standin_dir: Path, record: Path) -> None:
    run = run_ks(["deploy"], project, [standin_dir], record,
                 env={"KAMAL_SECURE_SKIP": "prod is down, INC-42"})
    assert run.code == 0
    assert run.argv == [b"deploy"]
    assert "BREAK GLASS" in run.stderr
    lines = (project / ".kamal" / "secure-audit.log").read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["reason"] == "prod is down, INC-42"
    assert entry["command"] == ["deploy"]
    assert entry["findings"] >= 2
    assert entry["git_commit"] is None  # not a git repository
    assert entry["hosts_checked"] is False  # run_ks sets KAMAL_SECURE_OFFLINE=1: recorded
    assert set(entry) >= {"time", "user", "git_commit", "command", "reason", "findings"}


def test_break_glass_record_names_the_account_without_user(project: Path, standin_dir: Path,
                                                           record: Path) -> None:
    import pwd

    env = {"KAMAL_SECURE_SKIP": "INC-43", "USER": "", "LOGNAME": ""}
    run = run_ks(["deploy"], project, [standin_dir], record, env=env)
    assert run.code == 0, run.stderr
    entry = json.loads((project / ".kamal" / "secure-audit.log").read_text().splitlines()[-1])
    assert entry["user"] == pwd.getpwuid(os.getuid()).pw_name


@pytest.mark.parametrize("reason", ["", "   "])
def test_break_glass_without_reason_is_refused(reason: str, project: Path, standin_dir: Path,
                                               record: Path) -> None:
    run = run_ks(["deploy"], project, [standin_dir], record, env={"KAMAL_SECURE_SKIP": reason})
    assert run.code == 2
    assert run.record is None
    assert "reason is required" in run.stderr
    assert not (project / ".kamal" / "secure-audit.log").exists()


def test_recursion_guard_skips_our_own_shim(tmp_path: Path, standin_dir: Path,
                                            record: Path) -> None:
    run = run_ks(["version"], tmp_path, [REPO / "bin", standin_dir], record)
    assert run.code == 0, run.stderr
    assert run.argv == [b"version"]


def test_shim_first_on_path_reaches_the_real_kamal(tmp_path: Path, standin_dir: Path,
                                                   record: Path) -> None:
    bindir = Path(sys.executable).parent
    env = clean_env({
        "PATH": os.pathsep.join([str(REPO / "bin"), str(standin_dir), "/usr/bin", "/bin",
                                 str(bindir)]),
        "KAMAL_STANDIN_RECORD": str(record)})
    # PATH is searched with the clean environment: the shim in bin/ is the first kamal
    proc = subprocess.run(["kamal", "app", "logs", "-h", "x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(record.read_text())
    assert [bytes.fromhex(a) for a in data["argv"]] == [b"app", b"logs", b"-h", b"x"]


def test_only_ourselves_on_path_is_exit_2(tmp_path: Path, record: Path) -> None:
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "kamal").symlink_to(REPO / "bin" / "kamal")
    run = run_ks(["version"], tmp_path, [REPO / "bin", link_dir], record)
    assert run.code == 2
    assert "real kamal was not found" in run.stderr
    assert "KAMAL_SECURE_KAMAL" in run.stderr


def test_same_process_exec_loop_is_broken(tmp_path: Path, standin_dir: Path,
                                          record: Path) -> None:
    # A "kamal" that is really kamal-secure without any marker we recognise.
    sneaky = tmp_path / "sneaky"
    sneaky.mkdir()
    (sneaky / "kamal").write_text(
        f"#!/bin/sh\nexec {sys.executable} -m kamal_\"\"secure \"$@\"\n"
    )
    (sneaky / "kamal").chmod(0o755)
    run = run_ks(["version"], tmp_path, [sneaky, standin_dir], record)
    assert run.code == 0, run.stderr
    assert run.argv == [b"version"]


def test_explicit_kamal_path(tmp_path: Path, standin_dir: Path, record: Path) -> None:
    run = run_ks(["version"], tmp_path, [], record,
                 env={"KAMAL_SECURE_KAMAL": str(standin_dir / "kamal")})
    assert run.argv == [b"version"]
    bad = run_ks(["version"], tmp_path, [], record, env={"KAMAL_SECURE_KAMAL": "/nonexistent"})
    assert bad.code == 2
    assert "not an executable file" in bad.stderr


def test_missing_kamal_is_exit_2(tmp_path: Path, record: Path) -> None:
    run = run_ks(["version"], tmp_path, [], record)
    assert run.code == 2
    assert "install Kamal" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("args", UNRESOLVABLE, ids=" ".join)
def test_fallback_refuses_what_it_cannot_resolve(args: list[str], tmp_path: Path,
                                                 standin_dir: Path, record: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    run = run_ks(args, tmp_path, [standin_dir], record)
    assert run.code == 2, run.stderr
    assert "cannot be guarded" in run.stderr  # said on every command off the fast path
    assert "without Kamal itself" in run.stderr
    assert run.record is None  # kamal never started (the probe did not count as a start)
