"""Typed errors that carry their exit code. Only cli.main turns them into an exit."""

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
