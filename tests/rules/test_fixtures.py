"""Per-rule fixtures: tests/fixtures/rules/<ID>/{pass,fail}/<case>.

A case is a deploy.yml (``case.yml``) or a project directory. Lines that must
trigger the rule carry ``# expect: <ID>``; the test asserts the exact set of
(file, line) pairs for that rule, and nothing at all for ``pass`` cases.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from kamal_secure.audit.static import run_static
from kamal_secure.rules.base import PROJECT_KINDS
from testing.project import FIXTURES

EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9, ]+)")
CASES = sorted((FIXTURES / "rules").glob("KS*/*/*"))


def _expected(root: Path, rule: str) -> set[tuple[str, int]]:
    found = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = EXPECT.search(line)
            if match and rule in {r.strip() for r in match.group(1).split(",")}:
                found.add((str(path.relative_to(root)), number))
    return found


def _project(case: Path, tmp_path: Path) -> Path:
    if case.is_dir():
        root = tmp_path / "project"
        shutil.copytree(case, root, symlinks=True)
        for hook in root.glob("**/hooks/*"):
            mode = 0o644 if hook.name.endswith("-noexec") else 0o755
            if hook.name.endswith("-noexec"):
                hook = hook.rename(hook.with_name(hook.name.removesuffix("-noexec")))
            hook.chmod(0o775 if "writable" in case.name else mode)
        return root
    (tmp_path / "config").mkdir()
    shutil.copy(case, tmp_path / "config" / "deploy.yml")
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=lambda c: "/".join(c.parts[-3:]))
def test_fixture(case: Path, tmp_path: Path) -> None:
    rule, kind = case.parts[-3], case.parts[-2]
    if rule == "KS517" and shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (make deps installs it)")
    root = _project(case, tmp_path)
    destination = "production" if (root / "config/deploy.production.yml").exists() else None
    report = run_static("config/deploy.yml", destination, root)
    got = {(f.location.file or "", f.location.line or 0) for f in report.findings
           if f.rule == rule}
    expected = _expected(root, rule) if kind == "fail" else set()
    assert got == expected
    if kind == "fail":
        assert expected, "a fail fixture must mark at least one line with # expect"


def test_every_static_rule_has_fixtures() -> None:
    """KS0xx-KS5xx: the project rules. Key and host rules are tested elsewhere."""
    from kamal_secure.rules.registry import ALL_RULES

    have = {p.name for p in (FIXTURES / "rules").iterdir()}
    static = [r for r in ALL_RULES if r.kind in PROJECT_KINDS]
    assert static, "no project rule found"
    missing = [r.id for r in static if r.id not in have]
    assert missing == []
    # every rule folder holds cases (the parametrized test above runs once per case)
    assert {c.parts[-3] for c in CASES} == have
