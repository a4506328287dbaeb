"""The loader's limits are ours: the same decision and wording with libyaml and without it."""

from __future__ import annotations

import pytest
import yaml

from kamal_secure.config import yamlsafe
from kamal_secure.errors import ConfigError


def _laughs() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    return text


HOSTILE = {
    "flow-sequences": ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", "nesting deeper than 100"),
    "flow-mappings": ("a: " + "{b: " * 5_000 + "c" + "}" * 5_000 + "\n",
                      "nesting deeper than 100"),
    "compact-block": ("- " * 5_000 + "x\n", "nesting deeper than 100"),
    "indented-block": ("".join(" " * i + f"k{i}:\n" for i in range(1_200)),
                       "nesting deeper than 100"),
    "too-large": ("a: " + "x" * (yamlsafe.MAX_CHARS + 1) + "\n", "larger than 1024 KiB"),
    "billion-laughs": (_laughs(), "aliases expand to more than"),
}
LOADERS = [yaml.SafeLoader] + ([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])


@pytest.fixture(params=LOADERS, ids=lambda loader: loader.__name__)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type:
    monkeypatch.setattr(yamlsafe, "Loader", request.param)
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_is_refused_in_our_words(case: str, loader: type) -> None:
    text, expected = HOSTILE[case]
    with pytest.raises(ConfigError) as caught:
        yamlsafe.load(text, "deploy.yml")
    message = str(caught.value)
    assert message.startswith("deploy.yml")
    assert "refused: " + expected in message


@pytest.mark.parametrize("text", [
    "a: [1, [2, {b: c}]]  # [[[[ a comment is not nesting\n",
    "d: 'it''s [ in quotes'\ne: it's [x]\n",
    'f: "[[[[[[[[[[ \\" [[[["\n',
    "g: " + "[" * 99 + "]" * 99 + "\n",  # with the top mapping: exactly the limit
])
def test_ordinary_brackets_are_not_refused(text: str, loader: type) -> None:
    assert yamlsafe.load(text, "deploy.yml").data is not None


def test_nesting_counts_quotes_and_comments_out() -> None:
    assert yamlsafe._flow_depths("a: '[[[' # [[[\nb: [[x]]\n") == [0, 2, 0]
