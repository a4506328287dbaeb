"""Zero-downtime deploy key rotation, one journalled step at a time.

Steps: generate the new key; add it on every host (logging in with the old key); prove a
login with the new key alone on every host; switch deploy.yml; remove the old key from
every host (logging in with the new key); retire the old private key. The journal
(``.kamal/secure-rotation.json``) is written atomically after every step, so a run cut
short anywhere can ``--resume`` or ``--abort``. At every point each host accepts a key
the operator still holds, and deploy.yml names a key that works on every host.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kamal_secure.config.load import json_type, read_json_object
from kamal_secure.errors import UsageError

JOURNAL = Path(".kamal/secure-rotation.json")
STEPS = ("started", "generated", "added", "verified", "switched", "removed", "retired")
CRASH_ENV = "KAMAL_SECURE_TEST_CRASH_AFTER"  # test-only fault injection: exit after a step


@dataclass
class Journal:
    config_file: str
    old_key: str  # as written in deploy.yml
    new_key: str
    step: str = "started"
    hosts: dict[str, str] = field(default_factory=dict)  # host -> last change (CHANGES)
    retired_as: str | None = None

    def done(self, step: str) -> bool:
        return STEPS.index(self.step) >= STEPS.index(step)

    def save(self, root: Path) -> None:
        path = root / JOURNAL
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

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
        bad = next((h for h, done in journal.hosts.items() if done not in CHANGES), None)
        if bad is not None:
            raise UsageError(f"{name}: hosts.{bad}: unknown change {journal.hosts[bad]!r}")
        return journal

    @staticmethod
    def remove(root: Path) -> None:
        (root / JOURNAL).unlink(missing_ok=True)


FIELDS = {"config_file": "a string", "old_key": "a string", "new_key": "a string",
          "step": "a string", "hosts": "a mapping of host to step",
          "retired_as": "a string or null"}
OPTIONAL = {"step", "hosts", "retired_as"}
CHANGES = ("add", "unadd", "remove")  # what was last done to a host's authorized_keys


def _shape_ok(value: object, kind: str) -> bool:
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
    """Move the old private key aside (or overwrite and delete it); returns what happened."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if not path.exists():
        return "already gone"
    if shred:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.write(os.urandom(size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        return "overwritten and deleted"
    target = path.with_name(f"{path.name}.retired-{stamp}")
    path.rename(target)
    return f"kept as {target}"
