"""Files that ship with kamal-secure: schema/, hooks/ and docs/rules/.

Installed from a wheel they live inside the package (kamal_secure/schema,
kamal_secure/hooks, kamal_secure/rule_docs); in a source checkout they are at
the top of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_LAYOUT = {"schema": ("schema", "schema"), "hooks": ("hooks", "hooks"),
           "rule_docs": ("rule_docs", "docs/rules")}


def data_dir(kind: str) -> Path:
    installed, source = _LAYOUT[kind]
    inside = _PACKAGE / installed
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / source


def schema_path(name: str) -> Path:
    return data_dir("schema") / name
