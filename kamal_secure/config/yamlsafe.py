"""The one place that turns YAML text into Python data.

Safe loading only, with every value's position kept, duplicate keys and
foreign tags (``!ruby/object``) reported rather than silently accepted, and
bounds on size, nesting and alias expansion so that hostile input fails fast
with a clear message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml

from kamal_secure.errors import ConfigError

MAX_CHARS = 1024 * 1024  # real deploy.yml files are a few KiB
MAX_DEPTH = 100
MAX_EVENTS = 500_000
MAX_NODES = 200_000  # after alias expansion: stops billion-laughs documents

Path = tuple[str | int, ...]
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STD_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Loaded:
    data: Any
    marks: dict[Path, Mark] = field(default_factory=dict)
    duplicates: list[tuple[Path, Mark, Mark]] = field(default_factory=list)
    foreign_tags: list[tuple[Path, str, Mark]] = field(default_factory=list)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _where(name: str, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    spot = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    problem = err.problem or err.context or "invalid YAML"
    return f"{spot}: {problem}"


def _plain(name: str, text: str, err: yaml.YAMLError) -> str:
    """One line for an error without a mark (a control character, say)."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(err.position, 0)) + 1
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or "?")
        return f"{name}:{line}: character #x{char:04x} is not allowed in YAML ({err.reason})"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{name}: {first}"


def _bounds(text: str, name: str) -> None:
    """Our own limits, checked on the text before any YAML parser sees it.

    libyaml has limits of its own with its own wording, which differ between builds; checking
    size and flow nesting here first keeps the message (and the decision) ours. The nesting
    count is an upper bound: brackets inside block scalars count too.
    """
    if len(text) > MAX_CHARS:
        raise ConfigError(f"{name}: refused: larger than {MAX_CHARS // 1024} KiB")
    for number, line in enumerate(_flow_depths(text), start=1):
        if line > MAX_DEPTH:
            raise ConfigError(f"{name}:{number}: refused: nesting deeper than {MAX_DEPTH}")


def _flow_depths(text: str) -> list[int]:
    """The deepest flow-collection nesting reached on each line (quotes and comments skipped)."""
    depths: list[int] = []
    depth, quote = 0, ""
    for line in text.split("\n"):
        # a single-quoted scalar may span lines too, but a lost quote only lowers the bound
        depth, deepest, quote = _scan_line(line, depth, quote if quote == '"' else "")
        depths.append(deepest)
    return depths


def _scan_line(line: str, depth: int, quote: str) -> tuple[int, int, str]:
    deepest, prev, escaped = depth, "", False
    for i, char in enumerate(line):
        if quote:
            escaped, quote = (not escaped and char == "\\" and quote == '"',
                              "" if char == quote and not escaped else quote)
            continue
        if char == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        if char in "'\"" and prev in ("", "[", "{", ",", ":", "-", "?"):
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
        prev = prev if char in " \t" else char
    return depth, deepest, quote


def _precheck(text: str, name: str) -> None:
    """Walk the event stream (iterative, bounded) before building anything."""
    _bounds(text, name)
    depth = 0
    try:
        for count, event in enumerate(yaml.parse(text, Loader=Loader)):
            if count > MAX_EVENTS:
                raise ConfigError(f"{name}: refused: more than {MAX_EVENTS} YAML events")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise ConfigError(f"{name}:{line}: refused: nesting deeper than {MAX_DEPTH}")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as err:
        raise ConfigError(f"{_where(name, err)}") from None
    except yaml.YAMLError as err:
        raise ConfigError(_plain(name, text, err)) from None


def load(text: str, name: str) -> Loaded:
    """Parse one YAML document with positions. Raises ConfigError with file:line."""
    _precheck(text, name)
    try:
        nodes = list(yaml.compose_all(text, Loader=Loader))
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_where(name, err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(_plain(name, text, err)) from None
    if len(nodes) > 1:
        raise ConfigError(f"{name}:{_mark(nodes[1]).line}: more than one YAML document")
    result = Loaded(None)
    if nodes:
        result.data = _Builder(result, name).build(nodes[0], ())
    return result


class _Builder:
    def __init__(self, result: Loaded, name: str) -> None:
        self.result = result
        self.name = name
        self.budget = MAX_NODES
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise ConfigError(
                f"{self.name}: refused: aliases expand to more than {MAX_NODES} nodes"
            )
        self.result.marks.setdefault(path, _mark(node))
        tag = node.tag or ""
        if tag.startswith("!"):
            self.result.foreign_tags.append((path, tag, _mark(node)))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if not (node.tag or "").startswith(STD_TAG):
            return node.value
        try:
            value = self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            return node.value
        if isinstance(value, dt.date | dt.datetime):
            return node.value
        if isinstance(value, bytes):
            return node.value
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Mark] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == STD_TAG + "merge":
                merges.append(value_node)
                continue
            key = _key_text(self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode)
                            else key_node.value)
            mark = _mark(key_node)
            if key in seen:
                self.result.duplicates.append(((*path, key), seen[key], mark))
                self.result.marks.pop((*path, key), None)
            seen[key] = mark
            self.result.marks[(*path, key)] = mark
            out[key] = self.build(value_node, (*path, key))
        for merge in merges:
            self._merge_into(out, merge, path)
        return out

    def _merge_into(self, out: dict[str, Any], node: yaml.Node, path: Path) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            saved, self.result.marks = self.result.marks, {}
            value = self.build(source, path)
            merged_marks, self.result.marks = self.result.marks, saved
            if not isinstance(value, dict):
                continue
            for key, item in value.items():
                if key in out:
                    continue
                out[key] = item
                prefix = (*path, key)
                for spot, mark in merged_marks.items():
                    if spot[: len(prefix)] == prefix:
                        self.result.marks.setdefault(spot, mark)


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return ""
    return str(key)
