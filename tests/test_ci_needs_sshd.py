"""With CI=true a machine without sshd fails the suite; elsewhere those tests skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_LIVE_TEST = "tests/remote/test_live_hosts.py::test_hardened_host"


def run_without_sshd(ci: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CI=ci, KAMAL_SECURE_TEST_SSHD="/nonexistent/sshd")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           ONE_LIVE_TEST], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_ci_fails_without_sshd() -> None:
    done = run_without_sshd("true")
    assert done.returncode == 1, done.stdout
    assert "CI=true and real sshd tests cannot run" in done.stdout


def test_elsewhere_skips_without_sshd() -> None:
    done = run_without_sshd("")
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
