"""Hostile or broken input through the real CLI: exit 2, one clear line, bounded cost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testing.cli import run_cli

MAX_SECONDS = 20
MAX_RSS_MB = 300


def _laughs() -> bytes:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text.encode()


def _big() -> bytes:
    line = b"  key: value value value value value value value value value value\n"
    return b"service: x\nimage: y\nlabels:\n" + line * (50 * 1024 * 1024 // len(line))


CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "the config is empty"),
    "empty-mapping": (lambda: b"--- {}\n", "the config is empty"),
    "list": (lambda: b"- a\n- b\n", "the top level must be a mapping"),
    "binary": (lambda: bytes(range(256)) * 8, "binary data"),
    "invalid-utf8": (lambda: b"service: caf\xe9\n", "not valid UTF-8"),
    "50MB": (_big, "larger than"),
    "deep": (lambda: b"a: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "nesting deeper"),
    "billion-laughs": (_laughs, "aliases expand"),
    "bad-yaml": (lambda: b"service: [unclosed\n", "deploy.yml:2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    make, expected = CASES[case]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_bytes(make())
    run = run_cli(["scan", "--offline"], tmp_path)
    assert run.code == 2
    assert expected in run.stderr
    assert run.stderr.startswith("kamal-secure: error: config/deploy.yml")
    assert "Traceback" not in run.stderr + run.stdout
    assert len(run.stderr.strip().splitlines()) <= 2  # the error and at most a hint
    assert run.seconds < MAX_SECONDS
    assert run.max_rss_mb < MAX_RSS_MB


def test_missing_destination_file(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text("service: x\nimage: y\n")
    run = run_cli(["scan", "--offline", "-d", "production"], tmp_path)
    assert run.code == 2
    assert run.stderr.strip() == ("kamal-secure: error: destination 'production': "
                                  "config/deploy.production.yml not found (Kamal stops here too)")


def test_missing_config_file(tmp_path: Path) -> None:
    run = run_cli(["scan", "--offline"], tmp_path)
    assert run.code == 2
    assert "config/deploy.yml: file not found" in run.stderr
