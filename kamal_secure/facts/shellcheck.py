"""ShellCheck's notes on a Kamal hook script: a local fact, computed once per script text.

Rules read it through ``Context.shellcheck``; loading a project never runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SHELLCHECK_TIMEOUT = 20


@dataclass(frozen=True)
class ShellcheckNote:
    line: int
    column: int
    code: str
    level: str
    message: str


def shellcheck_notes(text: str) -> tuple[ShellcheckNote, ...] | None:
    """ShellCheck's notes for a shell hook; None when it is missing or the hook is not shell."""
    exe = shutil.which("shellcheck")
    if exe is not None and Path(exe).resolve().is_relative_to(Path.cwd().resolve()):
        exe = None  # a "shellcheck" inside the scanned project is the project's own code
    first = text.split("\n", 1)[0]
    if exe is None or (first.startswith("#!") and not re.search(r"\b(ba|da|k)?sh\b", first)):
        return None
    return _run(exe, text)


@lru_cache(maxsize=64)
def _run(exe: str, text: str) -> tuple[ShellcheckNote, ...] | None:
    shell = [] if text.startswith("#!") else ["--shell=bash"]
    try:
        out = subprocess.run([exe, "--format=json1", *shell, "-"], input=text,
                             capture_output=True, text=True, timeout=SHELLCHECK_TIMEOUT,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _notes(out.stdout)


def _notes(output: str) -> tuple[ShellcheckNote, ...] | None:
    try:
        comments = json.loads(output).get("comments", [])
    except (ValueError, AttributeError):
        return None
    return tuple(ShellcheckNote(int(c["line"]), int(c["column"]), f"SC{c['code']}",
                                str(c["level"]), str(c["message"])) for c in comments)
