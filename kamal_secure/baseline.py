"""Baseline files: the fingerprints of accepted findings, so only new ones fail."""

from __future__ import annotations

import json
from pathlib import Path

from kamal_secure.errors import ConfigError, UsageError
from kamal_secure.report.model import Report


def read(path: Path) -> frozenset[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--baseline {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--baseline {path}: not a kamal-secure baseline ({err})") from None
    prints = data.get("fingerprints") if isinstance(data, dict) else None
    if data.get("tool") != "kamal-secure" or not isinstance(prints, list):
        raise ConfigError(f"--baseline {path}: not a kamal-secure baseline file")
    return frozenset(p for p in prints if isinstance(p, str))


def write(path: Path, report: Report) -> int:
    prints = sorted({f.fingerprint() for f in report.findings if f.suppression is None})
    content = json.dumps({"tool": "kamal-secure", "version": 1, "fingerprints": prints},
                         indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--write-baseline {path}: {err.strerror}") from None
    return len(prints)
