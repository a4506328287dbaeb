"""The passthrough path stays light: no YAML, JSON Schema, rich or paramiko at import."""

from __future__ import annotations

import subprocess
import sys

from testing.cli import REPO

HEAVY = ("yaml", "jsonschema", "rich", "paramiko", "sh", "ruamel")
PROBE = (
    "import sys\n"
    "import kamal_secure.cli, kamal_secure.gate.kamal, kamal_secure.errors\n"
    f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


def test_passthrough_imports_nothing_heavy() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == ""
