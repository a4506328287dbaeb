"""Ruby's ``File.fnmatch(pattern, name, File::FNM_EXTGLOB)``, the matcher behind Kamal's
``-h``/``-r`` filters (``Kamal::Utils.filter_specific_items``).

Written after Ruby's dir.c (``ruby_brace_expand``, ``fnmatch_helper``, ``bracket``)
rather than Python's fnmatch, which differs: ``[^x]`` negates in Ruby, a backslash
escapes the next character, ``{a,b}`` alternatives nest, an unclosed ``{`` matches
nothing, ``[]`` matches nothing and ``[!]`` anything, ``*``/``?``/``[..]`` never
match a leading ``.``, ``*`` also crosses ``/`` (no FNM_PATHNAME), case matters.
tests/e2e/test_model_vs_ruby.py compares it with Ruby itself.
"""

from __future__ import annotations

MAX_ALTERNATIVES = 4096  # brace expansion is exponential; a filter needs far fewer


def fnmatch(pattern: str, name: str) -> bool:
    return any(match_expanded(alt, name) for alt in expand_braces(pattern))


def expand_braces(pattern: str) -> list[str]:
    """``ruby_brace_expand`` with escapes on: the first balanced ``{...}`` is split on its
    top-level commas and each result expanded again; an unbalanced ``{`` yields nothing."""
    out: list[str] = []
    pending = [pattern]
    while pending:
        current = pending.pop()
        lbrace, rbrace = _outer_braces(current)
        if lbrace is None:
            out.append(current)
        elif rbrace is not None:
            head, body, tail = current[:lbrace], current[lbrace + 1:rbrace], current[rbrace + 1:]
            pending.extend(reversed([head + part + tail for part in _split_commas(body)]))
        if len(out) + len(pending) > MAX_ALTERNATIVES:
            raise ValueError(f"the filter {pattern!r} expands to too many alternatives")
    return out


def _outer_braces(text: str) -> tuple[int | None, int | None]:
    lbrace: int | None = None
    nest = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            if nest == 0:
                lbrace = i
            nest += 1
        if ch == "}" and lbrace is not None:
            nest -= 1
            if nest == 0:
                return lbrace, i
        if ch == "\\":
            i += 1
        i += 1
    return lbrace, None


def _split_commas(body: str) -> list[str]:
    parts: list[str] = []
    nest = 0
    start = 0
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "{":
            nest += 1
        elif ch == "}":
            nest -= 1
        elif ch == "," and nest == 0:
            parts.append(body[start:i])
            start = i + 1
        elif ch == "\\":
            i += 1
        i += 1
    parts.append(body[start:])
    return parts


def _unescape(p: str, i: int) -> int:
    return i + 1 if i < len(p) and p[i] == "\\" else i


def match_expanded(p: str, s: str) -> bool:  # noqa: C901 - one loop, as in dir.c
    """``fnmatch_helper`` (one brace-free alternative) without FNM_PATHNAME/FNM_DOTMATCH/
    FNM_CASEFOLD."""
    pi = si = 0
    if s.startswith(".") and not p[_unescape(p, 0):].startswith("."):
        return False  # a leading period is matched only by a literal one
    star_p: int | None = None
    star_s = 0
    while True:
        ch = p[pi] if pi < len(p) else ""
        if ch == "*":
            while pi < len(p) and p[pi] == "*":
                pi += 1
            if _unescape(p, pi) >= len(p):
                return True
            if si >= len(s):
                return False
            star_p, star_s = pi, si
            continue
        if ch == "?":
            if si >= len(s):
                return False
            pi += 1
            si += 1
            continue
        matched = False
        if ch == "[":
            if si >= len(s):
                return False
            end = _bracket(p, pi + 1, s[si])
            if end is not None:
                pi, si, matched = end, si + 1, True
        else:
            pi = _unescape(p, pi)
            if si >= len(s):
                return pi >= len(p)
            if pi < len(p) and p[pi] == s[si]:
                pi, si, matched = pi + 1, si + 1, True
        if matched:
            continue
        if star_p is None:  # failed: let the last '*' take one more character
            return False
        star_s += 1
        pi, si = star_p, star_s
        if si > len(s):
            return False


def _bracket(p: str, i: int, c: str) -> int | None:  # noqa: C901 - as in dir.c
    """Where the ``[...]`` starting at ``i`` ends (index after ``]``) if it matches ``c``."""
    if i >= len(p):
        return None
    nope = p[i] in "!^"
    if nope:
        i += 1
    ok = False
    while i >= len(p) or p[i] != "]":
        if i >= len(p):
            return None
        t1 = _unescape(p, i)
        if t1 >= len(p):
            return None
        i = t1 + 1
        if i >= len(p):
            return None
        if p[i] == "-" and (i + 1 >= len(p) or p[i + 1] != "]"):
            t2 = _unescape(p, i + 1)
            if t2 >= len(p):
                return None
            i = t2 + 1
            if not ok and (c in (p[t1], p[t2]) or ord(p[t1]) <= ord(c) <= ord(p[t2])):
                ok = True
        elif not ok and p[t1] == c:
            ok = True
    return None if ok == nope else i + 1
