"""What the journalled rotations (``rotate-key``, ``ca rotate``) share in how they walk the
hosts: serial, stopping at the first failure; the steps up to ``verified`` rolled back
automatically on any failure; a line per host saying what holds there after a rollback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from kamal_secure.config.inventory import Inventory, Target
from kamal_secure.errors import EXIT_CLEAN, EXIT_INCOMPLETE, UsageError
from kamal_secure.remediate.journal import StepJournal


class Failed(Exception):
    pass


class Paused(Exception):
    """The user must change something by hand before the run can go on (--resume)."""


class JournalledSteps:
    COMMAND: ClassVar[str]  # "rotate-key": how to run it again, for messages
    ROLLED_BACK: ClassVar[str]  # what holds once an automatic rollback finished

    def __init__(self, journal: StepJournal, inventory: Inventory, root: Path) -> None:
        self.journal, self.inv, self.root = journal, inventory, root
        self.state: dict[str, str] = {}  # host label -> what holds there now (for messages)

    def abort(self) -> None:
        raise NotImplementedError

    def refuse_if_aborting(self, aborting: bool) -> None:
        if aborting:
            raise Failed("an --abort (or an automatic rollback) was started and did not "
                         f"finish: run `kamal-secure {self.COMMAND} --abort` again")

    def _each(self, title: str, work: Callable[[Target], None],
              targets: Sequence[Target] | None = None) -> None:
        """``work`` on every host in order, stopping at the first that fails (its error is
        raised here). Serial on purpose (concurrency 1): the journal names each host's
        change before it is made, and a failure must stop the rotation, or the rollback,
        before another host is touched: never a moment without a working way in."""
        from kamal_secure.remote.each_host import for_each_host

        for outcome in for_each_host(self.inv.targets if targets is None else targets, work,
                                     1, name=lambda t: t.label, title=title,
                                     stop_on_error=True):
            outcome.result()

    def _until_verified(self, add: Callable[[], None], verify: Callable[[], None]) -> None:
        """Steps ``added`` and ``verified`` (``verify`` again on --resume: right before the
        switch); any failure rolls everything back (and is raised, with what holds)."""
        j = self.journal
        if j.done("switched"):
            return
        try:
            if not j.done("added"):
                add()
                j.advance(self.root, "added")
            verify()
            if not j.done("verified"):
                j.advance(self.root, "verified")
        except Failed as err:
            self._rollback(str(err))

    def _rollback(self, why: str) -> None:
        try:
            self.abort()
        except Failed as err:
            raise Failed(f"{why}\nthe automatic rollback did not finish: {err}\n"
                         f"{self.describe()}\nrun `kamal-secure {self.COMMAND} --abort` "
                         "again once the host is back") from None
        raise Failed(f"{why}\nrolled back: {self.ROLLED_BACK}\n{self.describe()}")

    def describe(self) -> str:
        return "\n".join(f"  {label}: {state}" for label, state in self.state.items())


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
