"""Every rule copes with any shape of data under Kamal's keys: findings, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kamal_secure.audit.static import run_static

NAMES = ["servers", "web", "hosts", "options", "env", "clear", "secret", "tags", "ssh",
         "user", "keys", "keys_only", "proxy", "ssl", "accessories", "db", "image", "port",
         "registry", "password", "username", "builder", "args", "volumes", "labels", "cmd",
         "privileged", "cap-add", "publish", "network", "key_data", "traefik", "DEBUG",
         "require_destination", "secrets_path", "hooks_path", "aliases", "x-anchor"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000),
                    st.sampled_from(["root", "host", "0.0.0.0/0", "5432", "postgres",
                                     "$VAR", "AKIAQ3EGRTYUIOPLKJHG", "/:/host", "-----BEGIN",
                                     "127.0.0.1:5432:5432", "true", "false", ""]))
DATA = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), DATA, min_size=1, max_size=6))
def test_rules_never_crash_on_any_shape(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config").mkdir()
        (root / "config" / "deploy.yml").write_text(yaml.safe_dump(doc))
        report = run_static("config/deploy.yml", None, root)
        for finding in report.findings:
            assert finding.location.line is not None
            assert finding.location.line >= 1
