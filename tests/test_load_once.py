"""One read-only command loads each project once and runs ShellCheck once per hook script."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from kamal_secure import cli
from kamal_secure.config import load
from kamal_secure.facts import shellcheck
from testing.project import MINIMAL, write_project

HOOK = "#!/bin/sh\necho $1\n"  # SC2086: a note ShellCheck always has


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    loads: list[tuple[str, str | None]] = []
    real = load._load

    def counting(config_file: str, destination: str | None, root: Path) -> Any:
        loads.append((config_file, destination))
        return real(config_file, destination, root)

    monkeypatch.setattr(load, "_load", counting)
    return loads


def test_scan_loads_each_destination_once_and_shellchecks_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        counted: list[tuple[str, str | None]]) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is installed by `make test` (scripts/system-deps.sh)")
    write_project(tmp_path, {"config/deploy.yml": MINIMAL.replace("servers:\n  - 203.0.113.10\n",
                                                                  ""),
                             "config/deploy.staging.yml": "servers: [203.0.113.10]\n",
                             "config/deploy.production.yml": "servers: [203.0.113.11]\n",
                             ".kamal/hooks/pre-deploy": HOOK})
    monkeypatch.chdir(tmp_path)
    shellcheck._run.cache_clear()
    code = cli.main(["scan", "--offline", "--format", "json"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert sorted(counted, key=str) == sorted(
        [("config/deploy.yml", None), ("config/deploy.yml", "production"),
         ("config/deploy.yml", "staging")], key=str)
    assert shellcheck._run.cache_info().misses == 1  # one hook text, one ShellCheck run
    assert "SC2086" in out


def test_outside_a_command_every_load_reads_the_files_again(
        tmp_path: Path, counted: list[tuple[str, str | None]]) -> None:
    write_project(tmp_path, {})
    first = load.load_project(root=tmp_path)
    (tmp_path / "config" / "deploy.yml").write_text(MINIMAL.replace("shop", "cart"))
    assert load.load_project(root=tmp_path).data["service"] == "cart" != first.data["service"]
    with load.loaded_once():
        assert load.load_project(root=tmp_path) is load.load_project(root=tmp_path)
    assert len(counted) == 3


def test_the_fallback_gate_loads_the_project_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        counted: list[tuple[str, str | None]]) -> None:
    from kamal_secure.gate.run import run_fallback

    write_project(tmp_path, {"config/deploy.staging.yml": "servers: [203.0.113.10]\n"})
    monkeypatch.chdir(tmp_path)
    # findings (root user, no key): refused before any exec; offline: no hosts
    code = run_fallback(["deploy", "-d", "staging"], {"KAMAL_SECURE_OFFLINE": "1"}, "/bin/false")
    assert code == 1, capsys.readouterr().err
    assert counted == [("config/deploy.yml", "staging")]
