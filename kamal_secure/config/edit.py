"""Rewrite the ssh section of deploy.yml and nothing else.

ruamel.yaml (round trip) finds the section and renders its new text with the
file's own indentation, comments and quote style; the rest of the file is
kept byte for byte by splicing the new section in place of the old one. ERB
tags are swapped for placeholders before parsing and put back afterwards.
"""

from __future__ import annotations

import difflib
import io
import itertools
import re
from dataclasses import dataclass
from typing import Any

from kamal_secure.config.erb import TAG_RE
from kamal_secure.errors import ConfigError

FLOW_TOP_RE = re.compile(r"\A(?:\s*(?:#[^\n]*)?\n)*\s*(?:---\s*)?\{")
STATEMENT_LINE_RE = re.compile(r"^([ \t]*)(<%(?!%|=).*?%>)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Edit:
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self, name: str) -> str:
        return "".join(difflib.unified_diff(_diff_lines(self.before), _diff_lines(self.after),
                                            f"a/{name}", f"b/{name}"))


def _diff_lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


class _Masker:
    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def _token(self, text: str, comment: bool) -> str:
        token = f"KSERB{len(self.saved):05d}X"
        self.saved[token] = text
        return f"#{token}" if comment else token

    def mask(self, text: str) -> str:
        text = STATEMENT_LINE_RE.sub(lambda m: m.group(1) + self._token(m.group(2), True), text)
        return TAG_RE.sub(lambda m: self._token(m.group(0), False), text)

    def unmask(self, text: str) -> str:
        for token, original in self.saved.items():
            text = text.replace(f"#{token}", original).replace(token, original)
        return text


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


KEY_ONLY_RE = re.compile(r"^[^\s#-][^:#]*:\s*(#.*)?$")


def _indents(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as the file itself nests top-level keys."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    mapping, offset = 0, -1
    for line, following in itertools.pairwise(lines):
        if not KEY_ONLY_RE.match(line):
            continue
        depth = len(following) - len(following.lstrip(" "))
        if following.lstrip().startswith("- "):
            offset = depth if offset < 0 else offset
        elif depth and not mapping:
            mapping = depth
    return mapping or 2, max(offset, 0)


def _desired(key_path: str, forward_agent: bool = True,
             user: str | None = None) -> dict[str, Any]:
    """The ssh fields keygen writes; ``forward_agent: false`` only where Kamal knows the key."""
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    keys = CommentedSeq([DoubleQuotedScalarString(key_path)])
    keys.fa.set_flow_style()
    desired: dict[str, Any] = {"user": user} if user else {}
    desired.update({"keys": keys, "keys_only": True})
    if forward_agent:
        desired["forward_agent"] = False
    return desired


def _block_range(lines: list[str], doc: Any, key: str) -> tuple[int, int]:
    """Lines [start, end) of a top-level key's block; trailing comments stay outside."""
    keys = list(doc.keys())
    start = doc.lc.key(key)[0]
    later = [doc.lc.key(k)[0] for k in keys if doc.lc.key(k)[0] > start]
    end = min(later) if later else len(lines)
    while end > start + 1 and (not lines[end - 1].strip() or
                               lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def _render(node: Any, text: str, section: str = "ssh") -> str:
    yaml = _yaml()
    indent, offset = _indents(text)
    yaml.indent(mapping=indent, sequence=offset + 2, offset=offset)
    from ruamel.yaml.comments import CommentedMap

    out = io.StringIO()
    yaml.dump(CommentedMap([(section, node)]), out)
    return out.getvalue()


def _parse(masked: str, name: str) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        doc = _yaml().load(masked)
    except YAMLError as err:
        raise ConfigError(f"{name}: cannot edit safely ({str(err).splitlines()[0]}); "
                          "add the ssh section by hand") from None
    if doc is None:
        from ruamel.yaml.comments import CommentedMap

        doc = CommentedMap()
    if not hasattr(doc, "lc") or not isinstance(doc, dict):
        raise ConfigError(f"{name}: the top level is not a mapping; cannot edit it")
    return doc


def _trim_trailing_comment(node: Any) -> None:
    """ruamel hangs the blank lines and comments after a block on its last item: they stay
    in the file outside the block, so drop them from the node (keep an end-of-line comment)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not isinstance(node, CommentedMap | CommentedSeq) or not len(node):
        return
    last = list(node.keys())[-1] if isinstance(node, CommentedMap) else len(node) - 1
    for token in node.ca.items.get(last, []) or []:
        if token is not None and hasattr(token, "value") and "\n" in token.value:
            token.value = token.value.split("\n", 1)[0] + "\n"
    _trim_trailing_comment(node[last])


def _updated_ssh(current: Any, desired: dict[str, Any]) -> Any:
    from ruamel.yaml.comments import CommentedMap

    ssh = current if isinstance(current, CommentedMap) else CommentedMap()
    _trim_trailing_comment(ssh)
    for field, value in desired.items():
        if not _is_set(ssh, field, value):
            ssh[field] = value
    return ssh


def set_ssh_key(text: str, key_path: str, name: str = "config/deploy.yml", *,
                forward_agent: bool = True, user: str | None = None) -> Edit:
    """Make ``ssh`` name ``key_path`` with keys_only (and, when the project's Kamal has the
    key, ``forward_agent: false``); ``user`` sets ssh.user too."""
    return set_ssh(text, _desired(key_path, forward_agent, user), name)


def replace_ssh_key(text: str, key_path: str, name: str = "config/deploy.yml") -> Edit:
    """Point ``ssh.keys`` at ``key_path`` and change nothing else (key rotation)."""
    return set_ssh(text, {"keys": _desired(key_path)["keys"]}, name)


def set_ssh_config(text: str, config_path: str, name: str = "config/deploy.yml") -> Edit:
    """Make ``ssh.config`` point at ``config_path`` (pin-hosts' strict ssh config)."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return set_ssh(text, {"config": DoubleQuotedScalarString(config_path)}, name)


def set_ssh(text: str, desired: dict[str, Any], name: str = "config/deploy.yml") -> Edit:
    """Set ``desired`` fields under ``ssh``, changing nothing else in the file.

    Setting ``keys`` also replaces a seed-style top-level ``ssh_key:`` (Kamal rejects it)."""
    return set_section(text, "ssh", desired, name)


def set_section(text: str, section: str, desired: dict[str, Any], name: str) -> Edit:
    """Set ``desired`` fields under the top-level mapping ``section`` (``ssh`` of deploy.yml,
    ``certificates`` of .kamal/secure.yml), changing nothing else in the file."""
    masker = _Masker()
    masked = masker.mask(text)
    doc = _parse(masked, name)
    current = doc.get(section)
    if current is not None and not isinstance(current, dict):
        raise ConfigError(f"{name}: {section} is not a mapping; fix it by hand")
    seed = section == "ssh" and "keys" in desired and "ssh_key" in doc
    if current is not None and not seed and all(_is_set(current, f, v)
                                                for f, v in desired.items()):
        return Edit(text, text)
    if doc.fa.flow_style() or FLOW_TOP_RE.match(masked):  # `--- {}`: nothing to splice into
        return Edit(text, masker.unmask(_rewrite_flow(doc, desired, masked, seed, section)))
    block = _render(_updated_ssh(current, desired), masked, section)
    lines = _splice(masked, doc, name, block, seed, section)
    return Edit(text, masker.unmask("".join(lines)))


def _splice(masked: str, doc: Any, name: str, block: str, seed: bool,
            section: str = "ssh") -> list[str]:
    lines = masked.splitlines(keepends=True)
    has_ssh = doc.get(section) is not None
    if seed:  # the new block takes ssh_key's place, or ssh_key just goes
        start, end = _block_range(lines, doc, "ssh_key")
        lines[start:end] = [] if has_ssh else [block]
        if not has_ssh:
            return lines
        doc = _parse("".join(lines), name)
    if has_ssh:
        start, end = _block_range(lines, doc, section)
        lines[start:end] = [block]
        return lines
    tail = "" if not lines or lines[-1].endswith("\n") else "\n"
    lines.append(tail + ("\n" if lines else "") + block)
    return lines


def _rewrite_flow(doc: Any, desired: dict[str, Any], masked: str, seed: bool,
                  section: str = "ssh") -> str:
    if seed:
        doc.pop("ssh_key", None)
    doc[section] = _updated_ssh(doc.get(section), desired)
    doc.fa.set_block_style()
    yaml = _yaml()
    yaml.explicit_start = masked.lstrip().startswith("---")
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _is_set(ssh: Any, field: str, value: Any) -> bool:
    current = ssh.get(field)
    if isinstance(value, list):
        return isinstance(current, list) and list(current) == list(value)
    if isinstance(value, bool):
        return current is value
    return isinstance(current, str) and current == value


def snippet(key_path: str, forward_agent: bool = True, user: str | None = None) -> str:
    lines = ["ssh:\n", f"  user: {user}\n" if user else "", f"  keys: [\"{key_path}\"]\n",
             "  keys_only: true\n", "  forward_agent: false\n" if forward_agent else ""]
    return "".join(lines)
