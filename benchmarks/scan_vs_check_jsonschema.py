"""Benchmark (prints, never asserts): `kamal-secure scan --offline` against check-jsonschema.

Whole process, wall clock, median of several runs, on a typical config (the
bundled hardened example): kamal-secure does the full static audit (loader,
structure and security schemas, every Python rule, secrets and hooks), while
check-jsonschema only validates the same file against our security schema, a
peer doing less work. Goal: ratio <= 1.0. Then the whole corpus scanned in one
process. check-jsonschema comes from requirements/lock.txt (the `bench` extra).
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

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "kamal-configs"
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
BIN = Path(sys.executable).parent
CORPUS_SCAN = """
import sys, time
from pathlib import Path
from kamal_secure.audit.static import run_static
from kamal_secure.errors import ConfigError
corpus = Path(sys.argv[1])
start = time.perf_counter()
files = findings = 0
for path in sorted(corpus.glob("*.yml")) + sorted(corpus.glob("*.yml__at_*")):
    try:
        findings += len(run_static(str(path), None, corpus).findings)
    except ConfigError:
        pass
    files += 1
print(files, findings, time.perf_counter() - start)
"""


def ensure_check_jsonschema() -> Path:
    exe = BIN / "check-jsonschema"
    if not exe.exists():
        raise SystemExit("check-jsonschema is not in this venv: `make bench` installs it "
                         "from requirements/lock.txt")
    return exe


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, env=dict(os.environ, NO_COLOR="1"))
    return time.perf_counter() - start


def median_time(cmd: list[str], cwd: Path) -> float:
    timed(cmd, cwd)  # warm the page cache
    return statistics.median(timed(cmd, cwd) for _ in range(RUNS))


def compare(app: Path, checker: Path) -> None:
    schema = REPO / "kamal_secure" / "schema" / "deploy.security.schema.json"
    ours = median_time([str(BIN / "kamal-secure"), "scan", "--offline"], app)
    peer = median_time([str(checker), "--schemafile", str(schema), "config/deploy.yml"], app)
    print(f"typical config: {app.name}/config/deploy.yml, median of {RUNS} runs")
    print(f"  kamal-secure scan --offline      {ours * 1000:7.0f} ms")
    print(f"  check-jsonschema (schema only)   {peer * 1000:7.0f} ms")
    print(f"  ratio                            {ours / peer:7.2f}  (goal <= 1.0)")


def corpus() -> None:
    if not CORPUS.is_dir():
        print(f"corpus: {CORPUS} not found, skipped")
        return
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CORPUS_SCAN, str(CORPUS)], capture_output=True,
                         text=True, check=True, cwd=REPO)
    whole = time.perf_counter() - start
    files, findings, inner = out.stdout.split()
    print(f"corpus: {files} configs, {findings} findings in one process: "
          f"{float(inner) * 1000:.0f} ms scanning, {whole * 1000:.0f} ms whole process")


def main() -> int:
    checker = ensure_check_jsonschema()
    with tempfile.TemporaryDirectory(prefix="kamal-secure-bench-") as tmp:
        app = Path(tmp) / "hardened-app"
        shutil.copytree(REPO / "examples" / "hardened-app", app)
        compare(app, checker)
    corpus()
    return 0


if __name__ == "__main__":
    sys.exit(main())
