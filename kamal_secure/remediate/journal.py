"""The journal of a multi-step change to every host (rotate-key, ca rotate): one JSON file,
written atomically and durably (fsync of file and directory) after every step and every
per-host change, so that a run cut short anywhere can ``--resume`` or ``--abort``.

A journal is a dataclass that subclasses :class:`StepJournal` and names, as class
attributes, its file, its steps in order, its fields (with the shape each must have when
read back) and which of them may be missing. Reading refuses anything else: a journal is
never trusted beyond what was written. Test-only fault injection: ``CRASH_ENV=STEP`` exits
right after that step is saved, ``KILL_ENV=N`` at the Nth kill point of a run (every save).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

from kamal_secure.config.load import json_type, read_json_object
from kamal_secure.errors import UsageError
from kamal_secure.fileio import fsync_dir, write_atomic

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
