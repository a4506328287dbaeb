"""The one place that turns YAML text into Python data.

Safe loading only, with every value's position kept, duplicate keys and
foreign tags (``!ruby/object``) reported rather than silently accepted, and
bounds on size, nesting and alias expansion so that hostile input fails fast
with a clear message.
"""

from __future__ import annotations

import datetime as dt
import re
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
    # where each scalar (key or value) sits, 0-based (line, column, end line, end column):
    # text outside every span is YAML syntax or a comment
    spans: set[tuple[int, int, int, int]] = field(default_factory=set)


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


def load(text: str, name: str, ruby: bool = False) -> Loaded:
    """Parse one YAML document with positions. Raises ConfigError with file:line.

    ``ruby``: read it the way Kamal's Psych (``YAML.unsafe_load``, then
    ``symbolize_keys`` on the top level) does where that differs from PyYAML:
    a merge key (``<<``, also quoted) overrides the keys before it and is
    overridden by the keys after it; a plain ``:name`` is the symbol ``name``,
    which Kamal reads like the string at the top level (``:ssh:`` is ``ssh``) and
    as a value; nested symbol keys stay ``:name`` (Kamal rejects them as unknown).
    """
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
        lines = text.split("\n") if ruby else None
        builder = _Builder(result, name, lines)
        result.data = builder.symbolize(builder.build(nodes[0], ()))
    return result


SYMBOL = "\ue001"  # marks a top-level Symbol key until symbolize() (never in input)
SYMBOL_RE = re.compile(r":(?:([\"'])(.*)\1|(.+))", re.DOTALL)
EXPLICIT_TAG_RE = re.compile(r"(?:&\S+\s+)?!")


class _Builder:
    def __init__(self, result: Loaded, name: str, lines: list[str] | None = None) -> None:
        self.result = result
        self.name = name
        self.budget = MAX_NODES
        self.scalars = yaml.constructor.SafeConstructor()
        self.lines = lines  # the source text, split: Psych's reading (see load)
        self.forget_budget = 4 * MAX_NODES

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
        return self._value(node)

    def _value(self, node: yaml.Node) -> Any:
        self._span(node)
        symbol = self._symbol(node)
        return symbol if symbol is not None else self._scalar(node)

    def _symbol(self, node: yaml.Node) -> str | None:
        """Psych turns a plain scalar ``:name`` (or ``:"name"``) into a Symbol."""
        if (self.lines is None or not isinstance(node, yaml.ScalarNode) or node.style
                or node.tag != STD_TAG + "str" or self._explicit_tag(node)):
            return None
        found = SYMBOL_RE.fullmatch(node.value)
        if found is None:
            return None
        return found.group(2) if found.group(1) else found.group(3)

    def _explicit_tag(self, node: yaml.Node) -> bool:
        assert self.lines is not None
        mark = node.start_mark
        line = self.lines[mark.line] if mark.line < len(self.lines) else ""
        return EXPLICIT_TAG_RE.match(line[mark.column:]) is not None

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

    def _is_merge(self, key: yaml.Node) -> bool:
        if key.tag == STD_TAG + "merge":
            return True
        # Psych merges on a quoted "<<" too; only an explicit !!str tag makes it a key
        return (self.lines is not None and isinstance(key, yaml.ScalarNode)
                and key.value == "<<" and key.style in ("'", '"')
                and not self._explicit_tag(key))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Mark] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if self._is_merge(key_node):
                if self.lines is None:
                    merges.append(value_node)
                else:  # Psych: in document order, the merged keys win over earlier ones
                    self._merge_into(out, value_node, path, override=True)
                continue
            key = self._key(key_node, top=not path)
            mark = _mark(key_node)
            if key in seen:
                self.result.duplicates.append(((*path, key), seen[key], mark))
            if key in out:
                self._forget((*path, key))
            seen[key] = mark
            self.result.marks[(*path, key)] = mark
            out[key] = self.build(value_node, (*path, key))
        for merge in merges:
            self._merge_into(out, merge, path, override=False)
        return out

    def _span(self, node: yaml.Node) -> None:
        start, end = node.start_mark, node.end_mark
        self.result.spans.add((start.line, start.column, end.line, end.column))

    def _key(self, node: yaml.Node, top: bool) -> str:
        self._span(node)
        if not isinstance(node, yaml.ScalarNode):
            return _key_text(node.value)
        symbol = self._symbol(node) if top else None
        return SYMBOL + symbol if symbol is not None else _key_text(self._scalar(node))

    def symbolize(self, data: Any) -> Any:
        """Kamal's ``symbolize_keys`` on the top level: ``:ssh`` and ``ssh`` become one key;
        of two, the one Psych inserted later wins (reported as a duplicate)."""
        if self.lines is None or not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        marks = self.result.marks
        renamed = {spot: _unmarked(spot) for spot in marks if _unmarked(spot) != spot}
        first: dict[str, Mark | None] = {}
        for key, value in data.items():
            name = key[1:] if key.startswith(SYMBOL) else key
            mark = marks.get((key,))
            if name in out:
                earlier = first[name]
                if earlier is not None and mark is not None:
                    self.result.duplicates.append(((name,), earlier, mark))
                old = [s for s in marks if s and s[0] in (name, SYMBOL + name) and s[0] != key]
                for spot in old:
                    renamed.pop(spot, None)
                    marks.pop(spot, None)
            first[name] = mark
            out[name] = value
        for old_spot, new_spot in renamed.items():
            if old_spot in marks:
                marks[new_spot] = marks.pop(old_spot)
        self.result.foreign_tags = [(_unmarked(p), t, m) for p, t, m in self.result.foreign_tags]
        self.result.duplicates = [(_unmarked(p), a, b) for p, a, b in self.result.duplicates]
        return out

    def _forget(self, prefix: Path) -> None:
        """Drop the positions under a key that a later value replaces (bounded work)."""
        self.forget_budget -= len(self.result.marks)
        if self.forget_budget < 0:
            raise ConfigError(f"{self.name}: refused: too many keys set over and over")
        for spot in [p for p in self.result.marks if p[: len(prefix)] == prefix]:
            del self.result.marks[spot]

    def _merged_list(self, node: yaml.SequenceNode, path: Path, override: bool) -> Any:
        """Earlier mappings in a ``<<: [*a, *b]`` list win, with their positions."""
        built: list[tuple[Any, dict[Path, Mark]]] = []
        for source in node.value:
            outer, self.result.marks = self.result.marks, {}
            built.append((self.build(source, path), self.result.marks))
            self.result.marks = outer
        if override and not all(isinstance(item, dict) for item, _ in built):
            return [item for item, _ in built]  # Psych: a plain "<<" key (Kamal: unknown)
        merged: dict[str, Any] = {}
        for item, marks in reversed(built):
            if not isinstance(item, dict):
                continue
            for key in item:
                if key in merged:
                    self._forget((*path, key))
            self.result.marks.update((spot, mark) for spot, mark in marks.items()
                                     if len(spot) > len(path))
            merged.update(item)
        return merged

    def _merge_into(self, out: dict[str, Any], node: yaml.Node, path: Path,
                    override: bool) -> None:
        saved, self.result.marks = self.result.marks, {}
        if isinstance(node, yaml.SequenceNode):
            merged = self._merged_list(node, path, override)
        else:
            merged = self.build(node, path)
        merged_marks, self.result.marks = self.result.marks, saved
        if not isinstance(merged, dict):
            if override:
                self._forget((*path, "<<"))
                self.result.marks[(*path, "<<")] = _mark(node)
                out["<<"] = merged
            return
        for key, item in merged.items():
            if key in out:
                if not override:
                    continue
                self._forget((*path, key))
            out[key] = item
            prefix = (*path, key)
            for spot, mark in merged_marks.items():
                if spot[: len(prefix)] == prefix:
                    self.result.marks.setdefault(spot, mark)


def _unmarked(path: Path) -> Path:
    if path and isinstance(path[0], str) and path[0].startswith(SYMBOL):
        return (path[0][1:], *path[1:])
    return path


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return ""
    return str(key)
