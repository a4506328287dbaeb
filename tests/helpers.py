"""Shared helpers for the tests: real files in a temporary project, the real CLI."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kamal_secure.audit import run_static
from kamal_secure.report.model import Finding

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parents[1].parent / "shared/corpus/kamal-configs"
FIXTURES = REPO / "tests" / "fixtures"
MINIMAL = "service: shop\nimage: acme/shop\nservers:\n  - 203.0.113.10\n"


def write_project(root: Path, files: dict[str, str], mode: int = 0o755) -> Path:
    """Write ``files`` (path -> text) under ``root``; hooks get ``mode``."""
    files = dict(files)
    files.setdefault("config/deploy.yml", MINIMAL)
    files.setdefault("config/deploy.staging.yml", "# a destination: not loaded without -d\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if "/hooks/" in name:
            path.chmod(mode)
    return root


def scan(root: Path, destination: str | None = None) -> list[Finding]:
    return run_static("config/deploy.yml", destination, root).findings


def ids(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def cli(*args: str, cwd: Path, timeout: float = 60) -> Run:
    """Run the real CLI in a subprocess: exit code, output, time and peak memory.

    The peak is RUSAGE_CHILDREN's ru_maxrss: the largest of every child waited for so far,
    so an upper bound for this one.
    """
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(REPO))
    env.pop("KAMAL_SECURE_FAIL_ON", None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kamal_secure", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Run(done.returncode, done.stdout, done.stderr, seconds, rss)
