"""Typed errors that carry their exit code, and the one way they are shown.

Only cli.main (and the verdict server, for the guard) turns them into an exit.
"""

import os
import sys
from collections.abc import Callable

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


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
    say_error(UsageError(f"internal error ({type(err).__name__}); details in {path}"))
    return EXIT_INCOMPLETE
