"""Shared helpers for the tests: real files in a temporary project, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
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


def cli(*args: str, cwd: Path, timeout: float = 60,
        limit_mb: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, optionally under an address-space limit."""
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(REPO))
    prefix: list[str] = []
    if limit_mb is not None:
        prefix = ["prlimit", f"--as={limit_mb * 1024 * 1024}", "--"]
    return subprocess.run([*prefix, sys.executable, "-m", "kamal_secure", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
