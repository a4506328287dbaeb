"""With CI=true a machine without sshd fails the suite; elsewhere those tests skip."""

from __future__ import annotations

import sys

from testing.cli import REPO, Result, run_cli

ONE_LIVE_TEST = "tests/remote/test_live_hosts.py::test_hardened_host"


def run_without_sshd(ci: str) -> Result:
    return run_cli(["-q", "-p", "no:cacheprovider", ONE_LIVE_TEST], REPO,
                   {"CI": ci, "KAMAL_SECURE_TEST_SSHD": "/nonexistent/sshd"},
                   program=[sys.executable, "-m", "pytest"])


def test_ci_fails_without_sshd() -> None:
    done = run_without_sshd("true")
    assert done.code == 1, done.stdout
    assert "CI=true and real sshd tests cannot run" in done.stdout


def test_elsewhere_skips_without_sshd() -> None:
    done = run_without_sshd("")
    assert done.code == 0, done.stdout
    assert "1 skipped" in done.stdout
