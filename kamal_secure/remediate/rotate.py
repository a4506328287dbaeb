"""Zero-downtime deploy key rotation, one journalled step at a time.

Steps: generate the new key; add it on every host (logging in with the old key); prove a
login with the new key alone on every host; switch deploy.yml; remove the old key from
every host (logging in with the new key); retire the old private key. ``--abort`` goes
back the same way: the old key is put back on every host first (logging in with the new
key where the old one no longer works), proven, then deploy.yml names it again, then the
new key leaves the hosts. The journal (``.kamal/secure-rotation.json``) is written
atomically and durably (fsync of file and directory) after every step, so a run cut short
anywhere can ``--resume`` or ``--abort``. The rules held at every step, per host: never
remove the last key we hold that logs in there (a key is only removed over a session
that logged in with the other one), and never let deploy.yml name a key that has not
just been proven to log in on every host.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kamal_secure.config.load import json_type, read_json_object
from kamal_secure.errors import UsageError
from kamal_secure.fileio import fsync_dir, write_atomic

JOURNAL = Path(".kamal/secure-rotation.json")
STEPS = ("started", "generated", "added", "verified", "switched", "removed", "retired")
CRASH_ENV = "KAMAL_SECURE_TEST_CRASH_AFTER"  # test-only fault injection: exit after a step
KILL_ENV = "KAMAL_SECURE_TEST_KILL_POINT"  # test-only: exit at the Nth kill point of a run
_points = itertools.count(1)


def kill_point() -> None:
    """A place where the kill tests may stop the process (every journalled change)."""
    if os.environ.get(KILL_ENV) == str(next(_points)):
        os._exit(99)


@dataclass
class Journal:
    config_file: str
    old_key: str  # as written in deploy.yml
    new_key: str
    step: str = "started"
    hosts: dict[str, str] = field(default_factory=dict)  # host -> last change done there
    retired_as: str | None = None
    aborting: bool = False  # an --abort (or an automatic rollback) has started
    config_before: str | None = None  # deploy.yml as it was before the switch, byte for byte

    def done(self, step: str) -> bool:
        return STEPS.index(self.step) >= STEPS.index(step)

    def save(self, root: Path) -> None:
        write_atomic(root / JOURNAL, json.dumps(asdict(self), indent=2) + "\n", 0o600)
        kill_point()

    def advance(self, root: Path, step: str) -> None:
        self.step = step
        self.save(root)
        if os.environ.get(CRASH_ENV) == step:
            os._exit(99)  # the crash-matrix tests stop the process right here

    @classmethod
    def load(cls, root: Path) -> Journal | None:
        path = root / JOURNAL
        if not path.exists() and not path.is_symlink():
            return None
        name = str(JOURNAL)
        data = read_json_object(path, name, "a rotation journal")
        for key, kind in FIELDS.items():
            value = data.get(key)
            if key not in data and key not in OPTIONAL:
                raise UsageError(f"{name}: not a rotation journal: {key!r} is missing")
            if key in data and not _shape_ok(value, kind):
                raise UsageError(f"{name}: {key} is {json_type(value)}, expected {kind}")
        extra = sorted(set(data) - set(FIELDS))
        if extra:
            raise UsageError(f"{name}: not a rotation journal: unknown key {extra[0]!r}")
        journal = cls(**data)
        if journal.step not in STEPS:
            raise UsageError(f"{name}: unknown step {journal.step!r}")
        bad = next((h for h, done in journal.hosts.items() if not CHANGE.fullmatch(done)), None)
        if bad is not None:
            raise UsageError(f"{name}: hosts.{bad}: unknown change {journal.hosts[bad]!r}")
        return journal

    @staticmethod
    def remove(root: Path) -> None:
        (root / JOURNAL).unlink(missing_ok=True)
        fsync_dir((root / JOURNAL).parent)


FIELDS = {"config_file": "a string", "old_key": "a string", "new_key": "a string",
          "step": "a string", "hosts": "a mapping of host to step",
          "retired_as": "a string or null", "aborting": "true or false",
          "config_before": "a string or null"}
OPTIONAL = {"step", "hosts", "retired_as", "aborting", "config_before"}
# what was last done to a host's authorized_keys, e.g. "add new done", "remove old started"
CHANGE = re.compile(r"(add|remove) (old|new) (started|done)")


def _shape_ok(value: object, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if kind == "a string or null":
        return value is None or isinstance(value, str)
    if kind == "a string":
        return isinstance(value, str) and bool(value)
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def new_key_path(old: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = old.rsplit("-rotated-", 1)[0]
    new = f"{base}-rotated-{stamp}"
    return new if new != old else f"{new}-2"


def retire(path: Path, shred: bool) -> str:
    """Move the old private key and its .pub aside (or overwrite and delete the private
    key); returns what happened."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    pub = path.with_name(path.name + ".pub")
    if not path.exists():
        return "already gone"
    if shred:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.write(os.urandom(size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        pub.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return "overwritten and deleted"
    target = path.with_name(f"{path.name}.retired-{stamp}")
    if pub.exists():
        pub.rename(target.with_name(target.name + ".pub"))
    path.rename(target)
    fsync_dir(path.parent)
    return f"kept as {target}"
