"""Run Ruby (and the gems of the e2e Kamal install) as the reference for our own model."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any


def rubylib(kamal: Path) -> str:
    """The RUBYLIB that scripts/install-kamal.sh wrote into its kamal wrapper."""
    found = re.search(r'RUBYLIB="([^"$]*)', kamal.read_text())
    assert found, f"{kamal}: no RUBYLIB line (not the wrapper from install-kamal.sh?)"
    return found.group(1)


def run_json(script: str, payload: Any, kamal: Path | None = None) -> Any:
    """Run ``script`` (reads JSON on stdin, prints JSON) with Kamal's gems on the load path."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    if kamal is not None:
        env["RUBYLIB"] = rubylib(kamal)
    out = subprocess.run(["ruby", "-e", script], input=json.dumps(payload), env=env,
                         capture_output=True, text=True, check=False, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)
