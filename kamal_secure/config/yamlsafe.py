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


def _precheck(text: str, name: str) -> None:
    """Walk the event stream (iterative, bounded) before building anything."""
    depth = 0
    try:
        for count, event in enumerate(yaml.parse(text, Loader=Loader)):
            if count > MAX_EVENTS:
                raise ConfigError(f"{name}: refused: more than {MAX_EVENTS} YAML events")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1  # type: ignore[union-attr]
                    raise ConfigError(f"{name}:{line}: refused: nesting deeper than {MAX_DEPTH}")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as err:
        raise ConfigError(f"{_where(name, err)}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: {err}") from None


def load(text: str, name: str) -> Loaded:
    """Parse one YAML document with positions. Raises ConfigError with file:line."""
    _precheck(text, name)
    try:
        nodes = list(yaml.compose_all(text, Loader=Loader))
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_where(name, err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: {err}") from None
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
