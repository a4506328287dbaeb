"""The import arrows of docs/ARCHITECTURE.md hold: each unit imports only what its row allows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from testing.cli import REPO

PACKAGE = REPO / "kamal_secure"
ROW = re.compile(r"^\| (`[^|]+`) \| [^|]+ \| ([^|]+) \|$")


def allowed() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for line in (REPO / "docs" / "ARCHITECTURE.md").read_text("utf-8").splitlines():
        match = ROW.match(line)
        if match:
            may = {w.strip() for w in match.group(2).split(",")} - {"(nothing)"}
            row = re.findall(r"`([\w.]+)`", match.group(1))
            for unit in row:  # units that share a row may import each other
                table[unit] = may | set(row)
    return table


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str, units: set[str]) -> str | None:
    if module == "kamal_secure":
        return "kamal_secure"
    rest = module.removeprefix("kamal_secure.")
    for unit in sorted(units, key=len, reverse=True):
        if rest == unit or rest.startswith(unit + "."):
            return unit
    return None


def imported(path: Path) -> set[str]:
    """Every kamal_secure module this file imports, at any depth (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "kamal_secure"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "kamal_secure":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (REPO / Path(*sub.split("."))).is_dir() or \
                    (REPO / Path(*sub.split("."))).with_suffix(".py").is_file()
                found.add(sub if is_module else node.module)
    return found


def test_the_table_covers_every_module() -> None:
    table = allowed()
    assert len(table) >= 15, "the table in docs/ARCHITECTURE.md was not found"
    units = set(table) | {"kamal_secure"}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if module != "kamal_secure":
            assert unit_of(module, units) is not None, f"{module}: no row in ARCHITECTURE.md"
    for unit, may in table.items():
        assert may <= units, f"{unit}: may import unknown units {may - units}"


def test_imports_follow_the_arrows() -> None:
    table = allowed()
    units = set(table) | {"kamal_secure"}
    table["kamal_secure"] = set()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path), units)
        assert source is not None
        for target in sorted(imported(path)):
            unit = unit_of(target, units)
            if unit is not None and unit != source and unit not in table[source]:
                wrong.append(f"{module_name(path)} imports {target} ({source} -> {unit})")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The checker itself: an import the table forbids is found (rules must not reach SSH)."""
    table = allowed()
    units = set(table) | {"kamal_secure"}
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from kamal_secure.remote import session\n")
    targets = {unit_of(t, units) for t in imported(bad)}
    assert targets == {"remote"}
    assert "remote" not in table["rules"]
    assert "commands" not in table["gate"]
    assert "cli" not in table["commands"]


def test_the_ssh_layer_names_no_rule() -> None:
    """remote/ says why a host could not be checked; rules/ names the rule."""
    import typing

    from kamal_secure.facts.host import Unchecked
    from kamal_secure.rules.host_access import UNCHECKED_RULES

    files = sorted((PACKAGE / "remote").glob("*.py"))
    assert files
    named = [f"{path.name}:{node.lineno}" for path in files
             for node in ast.walk(ast.parse(path.read_text("utf-8")))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and re.search(r"\bKS\d{3}\b", node.value)]
    assert named == []
    assert set(UNCHECKED_RULES) == set(typing.get_args(Unchecked))
    assert [r.id for r in UNCHECKED_RULES.values()] == ["KS801", "KS802", "KS803", "KS804"]
