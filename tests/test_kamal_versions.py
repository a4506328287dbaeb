"""Advice that works on the user's Kamal: the version table, detection, and every fix that
writes or suggests a key checked against the key set of each supported Kamal minor version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kamal_secure.audit.static import run_static
from kamal_secure.config import yamlsafe
from kamal_secure.config.edit import set_ssh_key
from kamal_secure.facts import kamal_version as kv
from kamal_secure.rules.base import PROJECT_KINDS
from kamal_secure.rules.registry import ALL_RULES
from testing.project import write_project
from testing.standin import run_ks, write_standin

# the newest patch of every Kamal 2 minor release in the table
MINORS = sorted({v[:2]: v for v in kv.known_versions()}.values())
CHECKED = [r for r in ALL_RULES if r.kind in PROJECT_KINDS and r.id not in ("KS510", "KS511")]


def load_text(text: str) -> object:
    return yamlsafe.load(text, "deploy.yml").data


def lockfile(version: kv.Version) -> str:
    return (f"GEM\n  remote: https://rubygems.org/\n  specs:\n    kamal ({kv.show(version)})\n"
            "      sshkit (~> 1.23)\n\nDEPENDENCIES\n  kamal\n")


@pytest.fixture
def no_kamal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("KAMAL_SECURE_KAMAL", raising=False)


def test_table_matches_kamal_releases() -> None:
    assert len(MINORS) >= 2
    assert kv.since("ssh.forward_agent") == "2.12.0"  # basecamp/kamal#1853
    assert kv.since("ssh.keys") == "2.0.0"
    assert kv.since("ssh.config") == "2.1.0"
    assert "ssh.forward_agent" not in kv.keys_for((2, 11, 0))
    assert "ssh.forward_agent" in kv.keys_for((2, 12, 0))
    assert "ssh.forward_agent" in kv.keys_for((2, 99, 0))  # newer than the table: newest set


def test_version_from_lockfile_then_assumed_newest(tmp_path: Path, no_kamal: None) -> None:
    assert kv.detect(tmp_path).assumed
    assert kv.detect(tmp_path).version == kv.known_versions()[-1]
    root = tmp_path / "app"
    root.mkdir()
    (root / "Gemfile.lock").write_text(lockfile((2, 9, 0)))
    found = kv.detect(root)
    assert (found.version, found.source, found.assumed) == ((2, 9, 0), "Gemfile.lock", False)


def test_the_kamal_the_gate_runs_wins_over_the_lockfile(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    standin = write_standin(bin_dir)
    standin.write_text('#!/bin/sh\n[ "$1" = version ] && echo 2.10.1\n')
    (tmp_path / "Gemfile.lock").write_text(lockfile((2, 12, 0)))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("KAMAL_SECURE_KAMAL", raising=False)
    assert kv.detect(tmp_path).version == (2, 12, 0)  # the gate's lookup never runs kamal
    found = kv.detect(tmp_path, run=True)  # keygen and other commands may ask it
    assert found.version == (2, 10, 1)
    assert "version`" in found.source


def test_a_wrapper_that_names_its_gem_is_read_not_run(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kamal"
    wrapper.write_text("#!/bin/sh\ntouch \"$0.ran\"\nexec ruby /opt/gems/kamal-2.6.1/bin/kamal\n")
    wrapper.chmod(0o755)
    (tmp_path / "Gemfile.lock").write_text(lockfile((2, 12, 0)))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("KAMAL_SECURE_KAMAL", raising=False)
    found = kv.detect(tmp_path, run=True)
    assert found.version == (2, 6, 1)
    assert not (bin_dir / "kamal.ran").exists()


def _scan(root: Path, config: str, version: kv.Version) -> list[tuple[str, str]]:
    write_project(root, {"config/deploy.yml": config, "Gemfile.lock": lockfile(version)})
    return [(f.rule, f.fix or "") for f in run_static("config/deploy.yml", None, root).findings]


@pytest.mark.parametrize("version", MINORS, ids=kv.show)
def test_no_fix_suggests_a_key_that_kamal_rejects(version: kv.Version, tmp_path: Path,
                                                   no_kamal: None) -> None:
    """A secure example may use a key this Kamal lacks only if, on this Kamal, the rule's
    findings never suggest that key."""
    accepted = kv.keys_for(version)
    checked = 0
    for rule in CHECKED:
        if rule.example_path != "config/deploy.yml":
            continue
        paths = {".".join(p) for p in kv.config_paths(load_text(rule.secure))}
        missing = {p.rsplit(".", 1)[-1] for p in paths if kv.since(p) and p not in accepted}
        if not missing:
            continue
        checked += 1
        root = tmp_path / rule.id
        for found, fix in _scan(root, rule.insecure, version):
            if found == rule.id:
                assert not any(re.search(rf"\b{key}:", fix) for key in missing), (rule.id, fix)
    assert checked or version >= (2, 12, 0)


@pytest.mark.parametrize("version", MINORS, ids=kv.show)
def test_keygen_block_is_accepted(version: kv.Version) -> None:
    agent = "ssh.forward_agent" in kv.keys_for(version)
    edit = set_ssh_key("service: shop\nimage: a/b\n", "~/.ssh/k", forward_agent=agent,
                       user="deploy")
    written = {".".join(p) for p in kv.config_paths(load_text(edit.after))}
    assert written <= kv.keys_for(version)
    assert ("ssh.forward_agent" in written) is agent


def test_forward_agent_advice_on_two_versions(tmp_path: Path, no_kamal: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    config = "service: shop\nimage: a/b\nssh:\n  user: deploy\n"
    new = dict(_scan(tmp_path / "new", config, (2, 12, 0)))
    assert new["KS104"] == "Set `forward_agent: false` under ssh."
    old = dict(_scan(tmp_path / "old", config, (2, 11, 0)))
    assert "forward_agent:" not in old["KS104"]
    assert "Kamal 2.11.0 (Gemfile.lock) has no ssh.forward_agent" in old["KS104"]
    assert "SSH_AUTH_SOCK" in old["KS104"]
    written = dict(_scan(tmp_path / "written", config + "  forward_agent: false\n", (2, 11, 0)))
    assert "KS104" not in written  # the key is reported as KS003 there instead
    assert written["KS003"] == "Upgrade Kamal to 2.12.0 or later, or remove the key."


def test_too_new_key_is_ks003_on_old_kamal(tmp_path: Path, no_kamal: None) -> None:
    config = "service: shop\nimage: a/b\nssh:\n  user: deploy\n  forward_agent: false\n"
    write_project(tmp_path, {"config/deploy.yml": config, "Gemfile.lock": lockfile((2, 11, 0))})
    found = [f for f in run_static("config/deploy.yml", None, tmp_path).findings
             if f.rule == "KS003"]
    assert [(f.location.line, f.location.path) for f in found] == [(5, "ssh.forward_agent")]
    assert "needs Kamal 2.12.0 or later; Kamal 2.11.0 (Gemfile.lock) rejects it" in \
        found[0].message
    newer = tmp_path / "newer"  # looked up once per process and project: another project
    write_project(newer, {"config/deploy.yml": config, "Gemfile.lock": lockfile((2, 12, 0))})
    assert not [f for f in run_static("config/deploy.yml", None, newer).findings
                if f.rule == "KS003"]


def test_no_agent_socket_on_old_kamal_passes(tmp_path: Path) -> None:
    config = "service: shop\nimage: a/b\nssh:\n  user: deploy\n"
    write_project(tmp_path, {"config/deploy.yml": config, "Gemfile.lock": lockfile((2, 11, 0))})
    with_sock = run_ks(["scan", "--offline", "--format", "json"], tmp_path, [],
                       tmp_path / "rec.json", env={"SSH_AUTH_SOCK": "/tmp/agent.sock"})
    assert '"KS104"' in with_sock.stdout
    without = run_ks(["scan", "--offline", "--format", "json"], tmp_path, [],
                     tmp_path / "rec.json", env={"SSH_AUTH_SOCK": ""})
    assert '"KS104"' not in without.stdout


def test_keygen_write_config_on_old_kamal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_project(tmp_path, {"config/deploy.yml": "service: shop\nimage: a/b\n",
                             "Gemfile.lock": lockfile((2, 8, 2))})
    run = run_ks(["keygen", "--write-config", "--user", "deploy"], tmp_path, [],
                 tmp_path / "rec.json")
    assert run.code == 0, run.stderr
    written = (tmp_path / "config/deploy.yml").read_text()
    assert "forward_agent" not in written
    assert "user: deploy" in written
    assert "not writing forward_agent: Kamal 2.8.2 (Gemfile.lock)" in run.stdout
    paths = {".".join(p) for p in kv.config_paths(load_text(written))}
    assert paths <= kv.keys_for((2, 8, 2))


def test_pin_hosts_never_writes_ssh_config_for_kamal_2_0(tmp_path: Path) -> None:
    config = "service: shop\nimage: a/b\nservers: [203.0.113.10]\n"
    write_project(tmp_path, {"config/deploy.yml": config, "Gemfile.lock": lockfile((2, 0, 0))})
    run = run_ks(["pin-hosts", "--yes"], tmp_path, [], tmp_path / "rec.json")
    assert run.code == 2, run.stderr
    assert "Kamal 2.0.0 (Gemfile.lock) has no ssh.config (added in Kamal 2.1.0)" in run.stderr
    assert (tmp_path / "config/deploy.yml").read_text() == config
