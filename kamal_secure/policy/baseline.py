"""Baseline files: the fingerprints of accepted findings, so only new ones fail."""

from __future__ import annotations

import json
from pathlib import Path

from kamal_secure.config.load import json_type, read_json_object
from kamal_secure.errors import ConfigError, UsageError
from kamal_secure.fileio import write_atomic
from kamal_secure.report.model import Report


def read(path: Path, label: str = "--baseline") -> frozenset[str]:
    """``label`` says where the path came from (the option or KAMAL_SECURE_BASELINE)."""
    name = f"{label} {path}"
    data = read_json_object(path, name, "a kamal-secure baseline")
    prints = data.get("fingerprints")
    if data.get("tool") != "kamal-secure":
        raise ConfigError(f"{name}: not a kamal-secure baseline file (\"tool\" is not "
                          "\"kamal-secure\")")
    if not isinstance(prints, list):
        raise ConfigError(f"{name}: \"fingerprints\" is {json_type(prints)}, expected a list")
    bad = next((i for i, p in enumerate(prints) if not _is_fingerprint(p)), None)
    if bad is not None:
        raise ConfigError(f"{name}: fingerprints[{bad}] is not a finding fingerprint "
                          "(32 hex digits)")
    return frozenset(prints)


def _is_fingerprint(value: object) -> bool:
    return (isinstance(value, str) and len(value) == 32
            and all(c in "0123456789abcdef" for c in value))


def write(path: Path, report: Report) -> int:
    prints = sorted({f.fingerprint() for f in report.findings if f.suppression is None})
    content = json.dumps({"tool": "kamal-secure", "version": 1, "fingerprints": prints},
                         indent=2) + "\n"
    try:
        write_atomic(path, content)
    except OSError as err:
        raise UsageError(f"--write-baseline {path}: {err.strerror}") from None
    return len(prints)
