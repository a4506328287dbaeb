"""ERB masking: turn a Kamal template into YAML without running any Ruby.

Every ``<%= ... %>`` output tag becomes a run of ``DYNAMIC`` characters of the
same length, statement and comment tags become spaces, and newlines stay where
they are, so line and column positions in the masked text are the positions in
the file. Nothing is executed. An output tag that is only a string literal
(``<%= "my-password" %>``) renders that constant, so it is written in its
place: rules then see what Kamal will read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DYNAMIC = "\ue000"  # a private-use character: marks text that ERB would produce
TAG_RE = re.compile(r"<%(?!%)(.*?)%>", re.DOTALL)
SHELL_RE = re.compile(r"`|%x[({\[<|!]|\bsystem\s*\(|\bexec\s*\(|IO\.popen|Open3|\bspawn\s*\(")
BLOCK_OPEN_RE = re.compile(r"^\s*-?\s*(if|unless|case|while|until)\b|\bdo\s*(\|[^|]*\|)?\s*-?\s*$")
BLOCK_END_RE = re.compile(r"^\s*-?\s*end\b")
CONSTANT_RE = re.compile(r"""^=\s*(?:"([^"\\#]*)"|'([^'\\]*)')(?:\.(?:strip|to_s|freeze))*\s*-?$""")


@dataclass(frozen=True)
class ErbTag:
    kind: str  # "output", "statement" or "comment"
    line: int  # 1-based
    column: int  # 1-based
    source: str
    runs_shell: bool


@dataclass(frozen=True)
class Masked:
    text: str
    tags: tuple[ErbTag, ...]
    conditional_lines: frozenset[int]  # lines inside <% if %> ... <% end %> or loops


def _blank(text: str, fill: str) -> str:
    return "".join(ch if ch in "\r\n" else fill for ch in text)


def code_only(body: str) -> str:
    """Ruby code without its ``#`` comments (outside string literals): comments run nothing."""
    kept = []
    for line in body.split("\n"):
        quote = ""
        for index, char in enumerate(line):
            if quote:
                quote = "" if char == quote and line[index - 1] != "\\" else quote
            elif char in "\"'`":
                quote = char
            elif char == "#":
                line = line[:index]
                break
        kept.append(line)
    return "\n".join(kept)


def constant(body: str) -> str | None:
    """The text an output tag renders when it is a plain string literal, else None."""
    match = CONSTANT_RE.match(body.strip() if body.startswith("=") else "")
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def _kind(body: str) -> str:
    if body.startswith("#"):
        return "comment"
    if body.startswith("="):
        return "output"
    return "statement"


def mask(text: str) -> Masked:
    tags: list[ErbTag] = []
    pieces: list[str] = []
    conditional: set[int] = set()
    depth = 0
    open_line = 0
    last = 0
    for match in TAG_RE.finditer(text):
        start = match.start()
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        body = match.group(1)
        kind = _kind(body)
        shell = kind != "comment" and bool(SHELL_RE.search(code_only(body)))
        tags.append(ErbTag(kind, line, column, match.group(0), shell))
        pieces.append(text[last:start])
        pieces.append(_render(match.group(0), body, kind, text[match.end():match.end() + 1]))
        last = match.end()
        if kind != "statement":
            continue
        if BLOCK_END_RE.search(body) and depth:
            depth -= 1
            if depth == 0:
                conditional.update(range(open_line, line + 1))
        elif BLOCK_OPEN_RE.search(body):
            if depth == 0:
                open_line = line
            depth += 1
    pieces.append(text[last:])
    if depth:
        conditional.update(range(open_line, text.count("\n") + 2))
    masked = "".join(pieces).replace("<%%", "<% ")
    return Masked(masked, tuple(tags), frozenset(conditional))


def _render(tag: str, body: str, kind: str, after: str) -> str:
    """What stands in for a tag: its constant, DYNAMIC for other output, spaces otherwise."""
    fixed = constant(body) if kind == "output" and "\n" not in tag else None
    if fixed is None:
        return _blank(tag, DYNAMIC if kind == "output" else " ")
    # Pad to the tag's width where that cannot change the value (at the end of a line).
    return fixed + " " * (len(tag) - len(fixed)) if after in ("", "\n", "\r") else fixed


def is_dynamic(value: object) -> bool:
    return isinstance(value, str) and DYNAMIC in value
