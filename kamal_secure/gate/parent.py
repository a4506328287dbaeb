"""The command line of the Kamal process that is running one of our hooks.

Kamal tells its hooks the destination (KAMAL_DESTINATION) and the hosts
(KAMAL_HOSTS) but not the config file, so a hook finds the Kamal process among
its ancestors and reads that process's arguments with ``ps`` (macOS and Linux
alike; nothing here reads /proc). ``ps`` joins the arguments with spaces, so an
argument that itself contains whitespace cannot be told apart: the caller checks
what it parsed against Kamal's own environment and refuses when anything does
not fit.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from kamal_secure.errors import UsageError

MAX_DEPTH = 12  # hook -> sh -> (sshkit's sh) -> ruby kamal, with room for wrappers
PS_TIMEOUT = 10


@dataclass(frozen=True)
class KamalProcess:
    pid: int
    words: list[str]  # the whole command line, split on whitespace
    args: list[str]  # what follows the kamal executable: Kamal's own argv


def _ps(pid: int) -> tuple[int, str] | None:
    """(parent pid, command line) of ``pid``, or None when it is gone."""
    try:
        out = subprocess.run(["ps", "-ww", "-o", "ppid=", "-o", "args=", "-p", str(pid)],
                             capture_output=True, text=True, timeout=PS_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"cannot run ps to find the running Kamal: {err}") from None
    line = out.stdout.strip()
    if out.returncode != 0 or not line:
        return None
    ppid, _, args = line.partition(" ")
    try:
        return int(ppid), args.strip()
    except ValueError:
        return None


def _kamal_index(words: list[str]) -> int | None:
    """Where the kamal executable sits in a command line: ``kamal ...``, ``ruby
    path/to/kamal ...`` (a gem or Bundler binstub, Rails' bin/kamal) or ``... bundle exec
    kamal ...``."""
    names = [w.rsplit("/", 1)[-1] for w in words]
    if names and names[0] == "kamal":
        return 0
    if len(names) > 1 and names[1] == "kamal" and not words[0].startswith("-"):
        return 1
    for i in range(2, len(names)):
        if names[i] == "kamal" and names[i - 1] == "exec" and "bundle" in names[:i - 1]:
            return i
    return None


def running_kamal(start: int | None = None) -> KamalProcess:
    """The nearest ancestor of this process that is Kamal; UsageError when there is none."""
    pid = os.getppid() if start is None else start
    for _ in range(MAX_DEPTH):
        if pid <= 1:
            break
        found = _ps(pid)
        if found is None:
            break
        ppid, line = found
        words = line.split()
        index = _kamal_index(words)
        if index is not None:
            return KamalProcess(pid, words, words[index + 1:])
        pid = ppid
    raise UsageError("cannot find the Kamal process that runs this hook among its parents",
                     hint="the hooks only work under Kamal; use `kamal-secure scan` directly")
