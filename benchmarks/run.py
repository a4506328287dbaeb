"""`make bench`: run every benchmark script in this folder (they print, never assert)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    status = 0
    for script in sorted(Path(__file__).parent.glob("*.py")):
        if script.name in ("run.py", "__init__.py"):
            continue
        print(f"=== {script.name}", flush=True)
        status |= subprocess.run([sys.executable, str(script)], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
