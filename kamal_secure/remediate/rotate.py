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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from kamal_secure.fileio import fsync_dir
from kamal_secure.remediate.journal import CHANGE, CRASH_ENV, KILL_ENV, StepJournal, kill_point

__all__ = ["CHANGE", "CRASH_ENV", "JOURNAL", "KILL_ENV", "STEPS", "Journal", "kill_point",
           "new_key_path", "retire"]

JOURNAL = Path(".kamal/secure-rotation.json")
STEPS = ("started", "generated", "added", "verified", "switched", "removed", "retired")


@dataclass
class Journal(StepJournal):
    PATH: ClassVar[Path] = JOURNAL
    STEPS: ClassVar[tuple[str, ...]] = STEPS
    FIELDS: ClassVar[dict[str, str]] = {
        "config_file": "a string", "old_key": "a string", "new_key": "a string",
        "step": "a string", "hosts": "a mapping of host to step",
        "retired_as": "a string or null", "aborting": "true or false",
        "config_before": "a string or null"}
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"step", "hosts", "retired_as", "aborting", "config_before"})
    WHAT: ClassVar[str] = "a rotation journal"

    config_file: str
    old_key: str  # as written in deploy.yml
    new_key: str
    step: str = "started"
    hosts: dict[str, str] = field(default_factory=dict)  # host -> last change done there
    retired_as: str | None = None
    aborting: bool = False  # an --abort (or an automatic rollback) has started
    config_before: str | None = None  # deploy.yml as it was before the switch, byte for byte


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
