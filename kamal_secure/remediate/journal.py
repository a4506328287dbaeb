"""The journal of a multi-step change to every host (rotate-key, ca rotate): one JSON file,
written atomically and durably (fsync of file and directory) after every step and every
per-host change, so that a run cut short anywhere can ``--resume`` or ``--abort``.

A journal is a dataclass that subclasses :class:`StepJournal` and names, as class
attributes, its file, its steps in order, its fields (with the shape each must have when
read back) and which of them may be missing. Reading refuses anything else: a journal is
never trusted beyond what was written. Test-only fault injection: ``CRASH_ENV=STEP`` exits
right after that step is saved, ``KILL_ENV=N`` at the Nth kill point of a run (every save).

:class:`JournalledSteps` is how the rotations walk the hosts: serial, stopping at the first
failure; the steps up to ``verified`` rolled back automatically on any failure; a line per
host saying what holds there after a rollback.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from kamal_secure.config.load import json_type, read_json_object
from kamal_secure.errors import UsageError
from kamal_secure.fileio import fsync_dir, write_atomic

if TYPE_CHECKING:
    from kamal_secure.config.inventory import Inventory, Target

CRASH_ENV = "KAMAL_SECURE_TEST_CRASH_AFTER"  # test-only fault injection: exit after a step
KILL_ENV = "KAMAL_SECURE_TEST_KILL_POINT"  # test-only: exit at the Nth kill point of a run
_points = itertools.count(1)
# what was last done on a host, e.g. "add new done", "remove old started"
CHANGE = re.compile(r"(add|remove) (old|new) (started|done)")


def kill_point() -> None:
    """A place where the kill tests may stop the process (every journalled change)."""
    if os.environ.get(KILL_ENV) == str(next(_points)):
        os._exit(99)


class StepJournal:
    """Persistence shared by the journals; subclasses are dataclasses with ``step`` and
    ``hosts`` (host -> last change, as :data:`CHANGE`) among their fields."""

    PATH: ClassVar[Path]
    STEPS: ClassVar[tuple[str, ...]]
    FIELDS: ClassVar[dict[str, str]]  # field -> the shape it must have (see _shape_ok)
    OPTIONAL: ClassVar[frozenset[str]]
    WHAT: ClassVar[str]  # "a rotation journal", for messages
    step: str
    hosts: dict[str, str]

    def done(self, step: str) -> bool:
        return self.STEPS.index(self.step) >= self.STEPS.index(step)

    def save(self, root: Path) -> None:
        write_atomic(root / self.PATH, json.dumps(asdict(self), indent=2) + "\n",  # type: ignore[call-overload]
                     0o600)
        kill_point()

    def advance(self, root: Path, step: str) -> None:
        self.step = step
        self.save(root)
        if os.environ.get(CRASH_ENV) == step:
            os._exit(99)  # the crash-matrix tests stop the process right here

    @classmethod
    def load(cls, root: Path) -> Self | None:
        path = root / cls.PATH
        if not path.exists() and not path.is_symlink():
            return None
        name = str(cls.PATH)
        data = read_json_object(path, name, cls.WHAT)
        cls._check(data, name)
        journal = cls(**data)
        if journal.step not in cls.STEPS:
            raise UsageError(f"{name}: unknown step {journal.step!r}")
        bad = next((h for h, done in journal.hosts.items() if not CHANGE.fullmatch(done)), None)
        if bad is not None:
            raise UsageError(f"{name}: hosts.{bad}: unknown change {journal.hosts[bad]!r}")
        return journal

    @classmethod
    def _check(cls, data: dict[str, Any], name: str) -> None:
        for key, kind in cls.FIELDS.items():
            value = data.get(key)
            if key not in data and key not in cls.OPTIONAL:
                raise UsageError(f"{name}: not {cls.WHAT}: {key!r} is missing")
            if key in data and not _shape_ok(value, kind):
                raise UsageError(f"{name}: {key} is {json_type(value)}, expected {kind}")
        extra = sorted(set(data) - set(cls.FIELDS))
        if extra:
            raise UsageError(f"{name}: not {cls.WHAT}: unknown key {extra[0]!r}")

    @classmethod
    def remove(cls, root: Path) -> None:
        (root / cls.PATH).unlink(missing_ok=True)
        fsync_dir((root / cls.PATH).parent)


def _shape_ok(value: object, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if kind == "a string or null":
        return value is None or isinstance(value, str)
    if kind == "a string":
        return isinstance(value, str) and bool(value)
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


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
