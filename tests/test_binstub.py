"""`kamal-secure binstub install|uninstall|status` on a Rails/Bundler bin/kamal: reversible
byte for byte (tests/e2e/test_binstub_real_kamal.py runs it against the real Kamal)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kamal_secure.errors import UsageError
from kamal_secure.integrate import binstub
from testing.standin import BUNDLER_BINSTUB, run_ks

# What `bundle binstubs kamal` writes (Bundler 2.x), as shipped in Rails 8 apps.


def _app(tmp_path: Path, text: str = BUNDLER_BINSTUB, mode: int = 0o751) -> Path:
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin" / "kamal"
    stub.write_text(text)
    stub.chmod(mode)
    return tmp_path


def _cli(app: Path, *args: str) -> tuple[int, str]:
    run = run_ks(["binstub", *args], app, [], app / "rec.json")
    return run.code, run.stdout + run.stderr


def test_install_uninstall_is_byte_exact(tmp_path: Path) -> None:
    app = _app(tmp_path)
    stub = app / "bin" / "kamal"
    assert _cli(app, "status")[1].startswith("bin/kamal: runs Kamal directly")
    code, out = _cli(app, "install")
    assert code == 0, out
    text = stub.read_text()
    assert binstub.PRELUDE in text
    # after the magic comment and the leading comments, before the first line of code
    assert text.index("frozen_string_literal") < text.index(binstub.BEGIN) < text.index(
        'ENV["BUNDLE_GEMFILE"]')
    assert stat.S_IMODE(stub.stat().st_mode) == 0o751
    assert b"kamal_secure" not in stub.read_bytes()  # is_kamal_secure must not call it us
    assert _cli(app, "install")[1] == "bin/kamal: already goes through kamal-secure\n"
    assert _cli(app, "status")[1] == "bin/kamal: goes through kamal-secure\n"
    code, out = _cli(app, "uninstall")
    assert code == 0, out
    assert stub.read_text() == BUNDLER_BINSTUB
    assert stat.S_IMODE(stub.stat().st_mode) == 0o751
    assert _cli(app, "uninstall")[1].endswith("not installed, left alone\n")


def test_outdated_prelude_is_replaced(tmp_path: Path) -> None:
    app = _app(tmp_path)
    stub = app / "bin" / "kamal"
    binstub.install(stub)
    stub.write_text(stub.read_text().replace("refusing to run Kamal unchecked", "older text"))
    assert "outdated" in binstub.status(stub)
    with pytest.raises(UsageError, match="differ"):
        binstub.uninstall(stub)
    assert binstub.install(stub) == f"{stub}: updated"
    binstub.uninstall(stub)
    assert stub.read_text() == BUNDLER_BINSTUB


@pytest.mark.parametrize("text", ["#!/bin/sh\nexec kamal-secure \"$@\"\n", "", "\x00\xff"])
def test_refuses_what_is_not_a_ruby_binstub(tmp_path: Path, text: str) -> None:
    app = _app(tmp_path, text)
    code, out = _cli(app, "install")
    assert code == 2
    assert "bin/kamal" in out
    assert (app / "bin" / "kamal").read_text() == text


def test_edited_markers_refused_and_missing_file(tmp_path: Path) -> None:
    app = _app(tmp_path)
    stub = app / "bin" / "kamal"
    binstub.install(stub)
    stub.write_text(stub.read_text().replace(binstub.END, ""))
    with pytest.raises(UsageError, match="edited by hand"):
        binstub.uninstall(stub)
    code, out = _cli(tmp_path / "bin", "install")  # no bin/kamal there
    assert code == 2
    assert "not found" in out
