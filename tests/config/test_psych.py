"""deploy.yml is read as Kamal's Psych reads it, where that differs from PyYAML
(tests/e2e/test_model_vs_ruby.py compares with Psych itself on generated documents)."""

from __future__ import annotations

from pathlib import Path

from kamal_secure.config.inventory import build_inventory
from kamal_secure.config.load import load_project


def _project(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(text)
    project = load_project(root=tmp_path)
    return [t.name for t in build_inventory(project).targets]


def test_merge_key_after_explicit_keys_wins(tmp_path: Path) -> None:
    """Psych: `servers: [A]` then `<<: *x` with x: {servers: [B]} yields [B] (PyYAML: [A])."""
    hosts = _project(tmp_path, "x-base: &x\n  servers: [203.0.113.2]\n"
                     "service: shop\nimage: acme/shop\nservers: [203.0.113.1]\n<<: *x\n")
    assert hosts == ["203.0.113.2"]


def test_explicit_key_after_merge_wins_and_list_order(tmp_path: Path) -> None:
    hosts = _project(tmp_path, "x-a: &a {servers: [203.0.113.5]}\n"
                     "x-b: &b {servers: [203.0.113.6]}\n"
                     "service: shop\nimage: acme/shop\n<<: [*a, *b]\n")
    assert hosts == ["203.0.113.5"]  # the first mapping of a merge list wins
    (tmp_path / "config" / "deploy.yml").write_text(
        "x-a: &a {servers: [203.0.113.5]}\nservice: shop\nimage: acme/shop\n<<: *a\n"
        "servers: [203.0.113.7]\n")
    assert [t.name for t in build_inventory(load_project(root=tmp_path)).targets] == [
        "203.0.113.7"]


def test_top_level_symbol_keys_are_kamal_keys(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(
        "service: shop\nimage: acme/shop\nservers: [203.0.113.1]\n"
        "ssh:\n  user: deploy\n:ssh:\n  user: root\n  :port: 2222\n")
    project = load_project(root=tmp_path)
    assert project.get("ssh") == {"user": "root", ":port": 2222}  # nested: not Kamal's key
    assert build_inventory(project).ssh.user == "root"
    dup = project.sources[0].loaded.duplicates
    assert [(path, second.line) for path, _, second in dup] == [(("ssh",), 6)]
    assert project.origin(("ssh", "user")).line == 7


def test_quoted_merge_key_merges_and_symbol_values(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(
        "service: shop\nimage: acme/shop\nservers: [203.0.113.1]\n"
        "ssh: {user: deploy}\n\"<<\":\n  ssh:\n    user: :root\n")
    project = load_project(root=tmp_path)
    assert build_inventory(project).ssh.user == "root"
