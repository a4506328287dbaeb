"""Every file of the real corpus loads: findings, or one clear error naming file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kamal_secure.errors import ConfigError
from testing.corpus import destinations, items, scan
from testing.project import CORPUS

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not beside checkout")
WHERE = re.compile(r"^[^:\s]+:\d+(:\d+)?: ")


def test_the_whole_corpus_loads(tmp_path: Path) -> None:
    scanned = errors = 0
    for item in items():
        if item.kind == "other":
            continue
        for destination in destinations(item) if item.kind == "config" else [None]:
            result = scan(item, tmp_path, destination)
            scanned += 1
            if isinstance(result, ConfigError):
                errors += 1
                assert WHERE.match(result.message), result.message
                assert "\n" not in result.message
    assert scanned >= 130
    assert errors <= 1  # a `--- {}` base file scanned without its destination


def test_corpus_findings_point_into_real_files(tmp_path: Path) -> None:
    checked = 0
    for item in items():
        if item.kind != "config":
            continue
        result = scan(item, tmp_path, destinations(item)[-1])
        assert not isinstance(result, ConfigError), result.message
        for finding in result.findings:
            checked += 1
            assert finding.location.file
            assert (CORPUS / finding.location.file).is_file()
            assert (finding.location.line or 0) >= 1
    assert checked > 100, checked  # the corpus has findings to check
