"""`make bench`: every benchmark in turn (each prints its own ratios)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("hosts.py",)

if __name__ == "__main__":
    for name in BENCHMARKS:
        sys.argv = [str(HERE / name)]
        try:
            runpy.run_path(str(HERE / name), run_name="__main__")
        except SystemExit as done:
            if done.code:
                sys.exit(done.code)
