"""Every runtime dependency declared in pyproject.toml is imported by the package."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions

from testing.cli import REPO


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in project["dependencies"]}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "kamal_secure").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_every_declared_dependency_is_imported() -> None:
    declared = _declared()
    assert declared, "pyproject.toml declares no dependencies?"
    used: set[str] = set()
    for top in _imported_top_levels():
        for dist in packages_distributions().get(top, []):
            used.add(dist.lower().replace("_", "-"))
    assert declared - used == set(), f"declared but never imported: {sorted(declared - used)}"


def test_every_imported_third_party_module_is_declared() -> None:
    declared = _declared()
    third_party = {dist.lower().replace("_", "-")
                   for top in _imported_top_levels()
                   for dist in packages_distributions().get(top, [])
                   if dist.lower() != "kamal-secure"}
    assert third_party, "no third-party import found: the scan above is broken"
    assert third_party - declared == set(), f"imported, not declared: {third_party - declared}"
