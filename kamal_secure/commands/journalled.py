"""What the journalled rotations' commands (``rotate-key``, ``ca rotate``) share: the
--resume/--abort check, and running the steps with what holds at the end printed. How they
walk the hosts (:class:`JournalledSteps`) is in :mod:`kamal_secure.remediate.journal`."""

from __future__ import annotations

import sys
from collections.abc import Callable

from kamal_secure.errors import EXIT_CLEAN, EXIT_INCOMPLETE, UsageError
from kamal_secure.remediate.journal import Failed, JournalledSteps, Paused, StepJournal

__all__ = ["Failed", "JournalledSteps", "Paused", "check_progress", "drive"]


def check_progress(journal: StepJournal | None, resume: bool, abort: bool, what: str,
                   command: str) -> None:
    """A journal needs --resume or --abort; those need a journal."""
    if journal is not None and not (resume or abort):
        raise UsageError(f"{what} is in progress (step {journal.step})",
                         hint=f"kamal-secure {command} --resume, or --abort")
    if journal is None and (resume or abort):
        raise UsageError(f"no {what.removeprefix('a ')} in progress")


def drive(steps: JournalledSteps, forward: Callable[[], None], abort: bool,
          aborted: Callable[[], str], done: Callable[[], str]) -> int:
    """Run ``steps`` (``forward``, or ``abort``); print what holds at the end; exit 0 or 3."""
    try:
        if abort:
            steps.abort()
            sys.stdout.write(f"{aborted()}\n{steps.describe()}\n")
            return EXIT_CLEAN
        forward()
    except Paused as told:
        sys.stdout.write(f"{told}\n")
        return EXIT_INCOMPLETE
    except Failed as err:
        sys.stderr.write(f"kamal-secure: {err}\n")
        return EXIT_INCOMPLETE
    sys.stdout.write(f"{done()}\n")
    return EXIT_CLEAN
