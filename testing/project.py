"""Kamal projects on disk for tests, and the static checks run on them."""

from __future__ import annotations

from pathlib import Path

from kamal_secure.audit.static import run_static
from kamal_secure.report.model import Finding
from testing.cli import REPO

CORPUS = REPO.parent / "shared/corpus/kamal-configs"
FIXTURES = REPO / "tests" / "fixtures"
MINIMAL = "service: shop\nimage: acme/shop\nservers:\n  - 203.0.113.10\n"

SECURE_CONFIG = """\
service: shop
image: acme/shop
servers:
  - 127.0.0.1
ssh:
  user: deploy
  keys: ["~/.ssh/kamal_deploy_key"]
  keys_only: true
  forward_agent: false
"""

INSECURE_CONFIG = """\
service: shop
image: acme/shop
servers:
  - 127.0.0.1
aliases:
  ship: deploy
  tail: app logs -f
  ship2: ship
"""


def write_project(root: Path, files: dict[str, str], mode: int = 0o755, *,
                  defaults: bool = True) -> Path:
    """Write ``files`` (path -> text) under ``root``; hooks get ``mode``. With ``defaults``
    a minimal config/deploy.yml and an unused destination file are added unless given."""
    files = dict(files)
    if defaults:
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
