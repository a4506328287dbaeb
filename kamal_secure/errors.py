"""Typed errors that carry their exit code, and the one way they are shown.

Only cli.main (and the verdict server, for the guard) turns them into an exit.
"""

import os
import sys
from collections.abc import Callable

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_DECLINED = EXIT_USAGE  # a change was not confirmed (answered no, or no terminal to ask)
EXIT_INCOMPLETE = 3
EXIT_INTERNAL = EXIT_INCOMPLETE  # a bug: fail closed, as when a check could not complete
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

# What each exit code means (one line each in --help; the README's table says the same).
EXIT_CODES = (
    (EXIT_CLEAN, "clean, or findings below the threshold (the gate then runs kamal)"),
    (EXIT_FINDINGS, "findings at or above the threshold"),
    (EXIT_USAGE, "usage or configuration error (bad YAML, missing file, kamal not found),\n"
     "or a change not confirmed (answered no; no terminal and no --yes)"),
    (EXIT_INCOMPLETE, "a check could not complete (host unreachable, host key unknown or\n"
     "changed), or an internal error (details in a crash log)"),
)


class KamalSecureError(Exception):
    """An error reported to the user as one line, with an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(KamalSecureError):
    exit_code = EXIT_USAGE


class ConfigError(KamalSecureError):
    """The configuration cannot be read or makes no sense (exit 2)."""

    exit_code = EXIT_USAGE


class CheckIncomplete(KamalSecureError):
    """A check could not complete: host unreachable, host key unknown (exit 3)."""

    exit_code = EXIT_INCOMPLETE


class InternalError(KamalSecureError):
    """A bug in kamal-secure (an unexpected exception); the traceback is in a crash log."""

    exit_code = EXIT_INTERNAL


def say_error(err: KamalSecureError, show: Callable[[str], str] | None = None) -> None:
    """The one way an error reaches the user: one line on stderr, and a hint."""
    message = err.message.encode("utf-8", "backslashreplace").decode("utf-8")
    if show is not None:
        message = show(message)
    sys.stderr.write(f"kamal-secure: error: {message}\n")
    if err.hint:
        hint = show(err.hint) if show is not None else err.hint
        sys.stderr.write(f"kamal-secure: hint: {hint}\n")


def report_crash(err: Exception) -> int:
    """An unexpected exception: the traceback goes to a private file, never to the screen."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="kamal-secure-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        traceback.print_exception(err, file=log)
    internal = InternalError(f"internal error ({type(err).__name__}); details in {path}")
    say_error(internal)
    return internal.exit_code
