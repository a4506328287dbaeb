"""Passthrough cost: `kamal-secure version` against the smallest Python exec wrapper.

Both exec the same stand-in kamal (a shell script that exits 0). Runs are
interleaved so that machine noise hits both sides alike; the figure is the
ratio of medians. Goal: <= 1.3.

Python runs with its bytecode cache, as a pip install has it (written under the
benchmark's temporary directory, PYTHONPYCACHEPREFIX, also where PYTHONDONTWRITEBYTECODE
is set); BENCH_BYTECODE=0 measures without it, as benchmarks/oracle.py does.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPS = int(os.environ.get("BENCH_REPS", "200"))


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ks-bench-"))
    try:
        standin = tmp / "kamal"
        standin.write_text("#!/bin/sh\nexit 0\n")
        standin.chmod(0o755)
        ours = shutil.which("kamal-secure", path=str(Path(sys.executable).parent))
        if ours is None:
            print("kamal-secure console script not found next to", sys.executable)
            return 2
        env = dict(os.environ, KAMAL_SECURE_KAMAL=str(standin))
        bytecode = os.environ.get("BENCH_BYTECODE", "1") != "0"
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        wrapper = [sys.executable, "-c",
                   f"import os,sys; os.execvp({str(standin)!r}, [{str(standin)!r}, 'version'])"]
        a: list[float] = []
        b: list[float] = []
        _time([ours, "version"], env)  # warm (and, with bytecode, write) the cache
        for _ in range(REPS):
            a.append(_time([ours, "version"], env))
            b.append(_time(wrapper, env))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"passthrough `kamal-secure version`: median {ma * 1000:.1f} ms over {REPS} runs")
        print(f"minimal python exec wrapper:        median {mb * 1000:.1f} ms over {REPS} runs")
        print(f"ratio kamal-secure / minimal wrapper: {ma / mb:.2f}  (goal <= 1.3; Python "
              f"{'with' if bytecode else 'without'} its bytecode cache)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
