"""Run kamal-secure as a user would, always from a clean environment.

The environment a test runs in may carry our own settings (``KAMAL_SECURE_*``, say from a
developer's shell) or an SSH agent; none of them may change what a test sees. ``clean_env``
drops them; only what the test passes is added back.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KAMAL_SECURE = (sys.executable, "-m", "kamal_secure")
# ours, the stand-in kamal's, and the user's SSH agent: never inherited
DROPPED_PREFIXES = ("KAMAL_SECURE", "KAMAL_STANDIN_", "KAMAL_DESTINATION")
DROPPED = ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "FORCE_COLOR")


def _dropped(name: str) -> bool:
    return name.startswith(DROPPED_PREFIXES) or name in DROPPED


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without our settings or an SSH agent, plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if not _dropped(k)}
    environ.update(PYTHONPATH=str(REPO), NO_COLOR="1")
    environ.update(env or {})
    return environ


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float = 0.0
    max_rss_mb: float = 0.0


def run_cli(args: Sequence[str | bytes], cwd: Path, env: Mapping[str, str] | None = None, *,
            stdin: str | None = None, timeout: float = 120,
            program: Sequence[str] = KAMAL_SECURE) -> Result:
    """Run ``program`` (the kamal-secure CLI unless told) with ``args`` in a process of its
    own, from ``clean_env(env)``: exit code, output, time and peak memory.

    The peak is RUSAGE_CHILDREN's ru_maxrss: the largest of every child waited for so far,
    so an upper bound for this one.
    """
    start = time.monotonic()
    done = subprocess.run([*program, *args], cwd=cwd, env=clean_env(env), input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Result(done.returncode, done.stdout, done.stderr, seconds, rss)


class ExecRefused(BaseException):  # not an Exception: main() must not catch it
    """The CLI tried to exec (kamal) inside the test process."""


def _refuse_exec(*args: object) -> None:
    raise ExecRefused(f"the CLI tried to exec {args[0]!r} inside the test process")


class Main:
    """``kamal_secure.cli.main(args)`` in this process, from the same clean environment as
    ``run_cli``, in ``cwd``: for tests where the process boundary is not what is tested.
    Exec is refused (fails the test): a test that reaches kamal needs ``run_cli``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, args: list[str], cwd: Path, env: Mapping[str, str] | None = None
                 ) -> Result:
        from kamal_secure import cli

        for name in list(os.environ):
            if _dropped(name):
                self.monkeypatch.delenv(name)
        for name, value in clean_env(env).items():
            self.monkeypatch.setenv(name, value)
        self.monkeypatch.setattr(os, "execve", _refuse_exec)
        self.monkeypatch.setattr(os, "execv", _refuse_exec)
        self.monkeypatch.chdir(cwd)
        self.capsys.readouterr()
        start = time.monotonic()
        try:
            code = cli.main(args)
        except SystemExit as done:  # as the interpreter would turn it into an exit status
            code = done.code if isinstance(done.code, int) else int(done.code is not None)
        seconds = time.monotonic() - start
        out = self.capsys.readouterr()
        return Result(code, out.out, out.err, seconds)
