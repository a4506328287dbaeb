"""Shared test helpers: run kamal-secure as a real process next to a recording stand-in kamal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STANDIN_SOURCE = '''\
import json, os, sys
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
