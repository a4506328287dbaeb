"""The real-world corpus beside the checkout (shared/corpus/kamal-configs), as projects.

Configs are scanned in place (a base file with its destination siblings, whose
flattened names still follow Kamal's ``deploy.DEST.yml``); secrets files and
hooks are copied into a small project so that they are read as Kamal reads them.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from kamal_secure.audit.static import run_static
from kamal_secure.errors import ConfigError
from kamal_secure.report.model import Report
from testing.project import CORPUS, MINIMAL


@dataclass(frozen=True)
class Item:
    saved: str  # file name in the corpus
    original: str  # path inside its repository
    kind: str  # "config", "secrets", "hook" or "other"


def items() -> list[Item]:
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [Item(r["saved_name"], r["path"], _kind(r["path"])) for r in rows]


def _kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if "/hooks/" in path or "hooks/" in path:
        return "hook"
    if name.startswith("secrets"):
        return "secrets"
    if name.endswith((".yml", ".yaml")):
        return "config"
    return "other"


def destinations(item: Item) -> list[str | None]:
    """None (the base file alone) plus each destination that has a sibling file."""
    stem = item.saved.removesuffix(".yml")
    if "." in stem.rsplit("__", 1)[-1]:
        return [None]  # a destination file itself: load it as a config on its own
    found = sorted(p.name for p in CORPUS.glob(f"{stem}.*.yml"))
    return [None, *(name[len(stem) + 1: -len(".yml")] for name in found)]


def scan(item: Item, workdir: Path, destination: str | None = None) -> Report | ConfigError:
    try:
        if item.kind == "config":
            return run_static(str(CORPUS / item.saved), destination, CORPUS)
        root = workdir / item.saved
        target = ".kamal/secrets" if item.kind == "secrets" else \
            ".kamal/hooks/" + item.original.rsplit("/", 1)[-1].removesuffix(".sample")
        (root / ".kamal/hooks").mkdir(parents=True, exist_ok=True)
        (root / "config").mkdir(exist_ok=True)
        (root / "config/deploy.yml").write_text(MINIMAL)
        shutil.copy(CORPUS / item.saved, root / target)
        (root / target).chmod(0o755)
        return run_static("config/deploy.yml", None, root)
    except ConfigError as err:
        return err
