"""A recording stand-in ``kamal``, and the CLI run in front of it."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from testing.cli import run_cli

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
    """``run_cli`` with only ``path_dirs`` (and the system's) on PATH, offline, recording
    what the stand-in kamal was started with."""
    if record.exists():
        record.unlink()
    done = run_cli(args, cwd, {
        "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]),
        "KAMAL_STANDIN_RECORD": str(record),
        # these tests are about the wrapper; the live host checks have their own suite
        "KAMAL_SECURE_OFFLINE": "1",
        **(env or {}),
    }, stdin=stdin, timeout=60)
    data = json.loads(record.read_text()) if record.exists() else None
    return Run(done.code, done.stdout, done.stderr, data)
