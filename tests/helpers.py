"""Shared test helpers: real projects on disk, the real CLI, a recording stand-in kamal."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kamal_secure.audit.static import run_static
from kamal_secure.report.model import Finding

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parents[1].parent / "shared/corpus/kamal-configs"
FIXTURES = REPO / "tests" / "fixtures"
MINIMAL = "service: shop\nimage: acme/shop\nservers:\n  - 203.0.113.10\n"

STANDIN_SOURCE = '''\
import json, os, sys
if os.environ.get("KAMAL_SECURE_GUARD", "").startswith("probe:"):
    sys.exit(0)  # kamal-secure probing whether it can guard us: a Python stand-in cannot
record = os.environ.get("KAMAL_STANDIN_RECORD")
data = {
    "argv": [a.hex() for a in map(os.fsencode, sys.argv[1:])],
    "env": {k: v for k, v in os.environ.items()},
    "cwd": os.getcwd(),
    "stdin": sys.stdin.read() if os.environ.get("KAMAL_STANDIN_READ") else "",
}
if record:
    with open(record, "w") as f:
        json.dump(data, f)
sys.stdout.write("stand-in:" + data["stdin"])
sys.exit(int(os.environ.get("KAMAL_STANDIN_EXIT", "0")))
'''


def write_standin(directory: Path) -> Path:
    """A stand-in ``kamal`` that records argv (as bytes), environment and cwd."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kamal"
    path.write_text(f"#!{sys.executable}\n{STANDIN_SOURCE}")
    path.chmod(0o755)
    return path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    record: dict[str, object] | None

    @property
    def argv(self) -> list[bytes]:
        assert self.record is not None, f"kamal was not started: {self.stderr}"
        argv = self.record["argv"]
        assert isinstance(argv, list)
        return [bytes.fromhex(a) for a in argv]


def run_ks(
    args: list[str] | list[bytes],
    cwd: Path,
    path_dirs: list[Path],
    record: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAMAL_SECURE")}
    environ.update({
        "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]),
        "KAMAL_STANDIN_RECORD": str(record),
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
        # these tests are about the wrapper; the live host checks have their own suite
        "KAMAL_SECURE_OFFLINE": "1",
    })
    environ.update(env or {})
    if record.exists():
        record.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "kamal_secure", *args],
        cwd=cwd, env=environ, input=stdin, capture_output=True, text=True, timeout=60,
        check=False,
    )
    data = json.loads(record.read_text()) if record.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, data)


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
class CliRun:
    code: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def cli(*args: str, cwd: Path, timeout: float = 60) -> CliRun:
    """Run the real CLI in a subprocess: exit code, output, time and peak memory.

    The peak is RUSAGE_CHILDREN's ru_maxrss: the largest of every child waited for so far,
    so an upper bound for this one.
    """
    # offline: these projects name documentation addresses (203.0.113.x), never contacted
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(REPO), KAMAL_SECURE_OFFLINE="1")
    env.pop("KAMAL_SECURE_FAIL_ON", None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kamal_secure", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return CliRun(done.returncode, done.stdout, done.stderr, seconds, rss)
