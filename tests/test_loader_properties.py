"""Property tests on the loader: any input gives data or a ConfigError, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kamal_secure.audit.static import run_static
from kamal_secure.config import erb, yamlsafe
from kamal_secure.config.load import load_project
from kamal_secure.errors import ConfigError

PIECES = [*"ab:-[]{},&*!|>'\"#%<=` \n\t@\\", "<%=", "%>", "<% if x %>", "<% end %>"]
YAMLISH = st.lists(st.sampled_from(PIECES), max_size=120).map("".join)
KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.booleans(), KEYS)
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=20)


def _load(text: str) -> Any:
    try:
        return yamlsafe.load(erb.mask(text).text, "deploy.yml").data
    except ConfigError as err:
        return _checked(err, "deploy.yml")


def _checked(err: ConfigError, name: str) -> ConfigError:
    """A loader error is one line that names the file."""
    if not err.message.startswith(name) or "\n" in err.message:
        raise AssertionError(f"unclear error: {err.message!r}")
    return err


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_loads_or_fails_cleanly(text: str) -> None:
    _load(text)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_yamlish_text_loads_or_fails_cleanly(text: str) -> None:
    _load(text)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS, DOCS, min_size=1, max_size=5))
def test_safe_dump_round_trips_with_positions(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, sort_keys=False)
    loaded = yamlsafe.load(erb.mask(text).text, "deploy.yml")
    assert loaded.data == doc
    for key in doc:
        assert (key,) in loaded.marks


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_through_the_whole_audit(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config").mkdir()
        (root / "config" / "deploy.yml").write_bytes(raw)
        try:
            run_static("config/deploy.yml", None, root)
        except ConfigError as err:
            _checked(err, "config/deploy.yml")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, DOCS, max_size=4), st.dictionaries(KEYS, DOCS, max_size=4))
def test_destination_merge_is_kamals(base: dict[str, Any], over: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config").mkdir()
        (root / "config" / "deploy.yml").write_text(yaml.safe_dump({"service": "x", **base}))
        (root / "config" / "deploy.dest.yml").write_text(yaml.safe_dump(over))
        project = load_project("config/deploy.yml", "dest", root)
        for key, value in over.items():
            if not isinstance(value, dict):
                assert project.data[key] == value
