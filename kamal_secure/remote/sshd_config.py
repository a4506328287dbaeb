"""A fallback reader of sshd_config files, with sshd's semantics. Pure: no I/O of its own.

Used only when ``sshd -T`` cannot run on a host. Keywords are case-insensitive and
the first value obtained wins; ``Include`` expands globs in lexical order where it
stands (relative paths under /etc/ssh); a matching ``Match`` block (User, Host,
Address, LocalAddress, LocalPort, Group, All) overrides the global values. Keywords
it does not set get OpenSSH's defaults. The result is labelled "derived, not read".

Fail closed: a file that exists but cannot be read, an Include directory that cannot
be listed, or a Match block whose criteria cannot be evaluated here could set anything,
so the whole result is unknown (None), never the values of the files that could be read.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kamal_secure.facts.host import SOURCE_DERIVED, SshdConfig

MAIN = "/etc/ssh/sshd_config"
MAX_DEPTH = 16
ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
LISTS = {"allowusers", "allowgroups", "denyusers", "denygroups", "hostkey", "acceptenv"}
DEFAULTS = {  # OpenSSH 9.x compiled-in defaults for the settings the rules read
    "passwordauthentication": "yes", "kbdinteractiveauthentication": "yes",
    "permitemptypasswords": "no", "permitrootlogin": "prohibit-password",
    "pubkeyauthentication": "yes", "authenticationmethods": "any",
    "hostbasedauthentication": "no", "maxauthtries": "6", "permituserenvironment": "no",
    "x11forwarding": "no", "allowagentforwarding": "yes", "permittunnel": "no",
    "gatewayports": "no", "allowtcpforwarding": "yes", "ignorerhosts": "yes",
    "strictmodes": "yes", "logingracetime": "120", "clientaliveinterval": "0",
    "clientalivecountmax": "3", "loglevel": "INFO", "usepam": "no",
    "authorizedkeysfile": ".ssh/authorized_keys .ssh/authorized_keys2",
}

Reader = Callable[[str], "str | None"]  # path -> text ("" when absent), None when unreadable
Globber = Callable[[str], "list[str] | None"]  # pattern -> paths, None: dir not listable


@dataclass(frozen=True)
class ConnInfo:
    user: str
    addr: str
    host: str = ""
    laddr: str = ""
    lport: str = ""
    groups: tuple[str, ...] | None = None  # the user's groups (id -Gn); None: unknown


@dataclass
class _State:
    conn: ConnInfo
    read: Reader
    glob: Globber
    globals: dict[str, list[str]] = field(default_factory=dict)
    matched: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # why the result cannot be trusted


def derive(conn: ConnInfo, read: Reader, glob: Globber, main: str = MAIN
           ) -> tuple[SshdConfig | None, list[str]]:
    """None when any file that counts cannot be read (or a Match block cannot be evaluated):
    the values read from the other files would be a guess, not a fact."""
    state = _State(conn, read, glob)
    text = read(main)
    if not text:  # absent or unreadable: defaults alone would be a guess
        return None, [f"could not read {main}"]
    _text(state, main, text, None, 0)
    if state.unknown:
        return None, [*state.notes, "effective settings unknown: " + "; ".join(state.unknown)]
    merged = dict(DEFAULTS.items())
    pairs: list[tuple[str, str]] = []
    for key in sorted({*merged, *state.globals, *state.matched}):
        values = state.matched.get(key) or state.globals.get(key) or [merged[key]]
        pairs.extend((key, value) for value in values)
    return SshdConfig.of(pairs, SOURCE_DERIVED), state.notes


def _file(state: _State, path: str, match: bool | None, depth: int) -> None:
    """``match`` is None outside Match blocks, else whether the current block applies."""
    text = state.read(path)
    if text is None:
        state.notes.append(f"could not read {path}")
        state.unknown.append(f"{path} exists but could not be read")
        return
    _text(state, path, text, match, depth)


def _text(state: _State, path: str, text: str, match: bool | None, depth: int) -> None:
    for keyword, args in _lines(text):
        if keyword == "match":
            applies = _matches(args, state.conn, state.notes)
            if applies is None:
                state.unknown.append(f"Match {' '.join(args)} (in {path}) cannot be evaluated")
            match = bool(applies)
        elif keyword == "include":
            _include(state, args, match, depth)
        elif match is None:
            _set(state.globals, keyword, args)
        elif match:
            _set(state.matched, keyword, args)


def _include(state: _State, args: list[str], match: bool | None, depth: int) -> None:
    if depth >= MAX_DEPTH:
        state.notes.append("Include nested too deeply")
        state.unknown.append("Include nested too deeply")
        return
    for pattern in args:
        full = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
        found = state.glob(full) if any(c in full for c in "*?[") else [full]
        if found is None:
            state.notes.append(f"could not list {full}")
            state.unknown.append(f"the files of Include {full} could not be listed")
            continue
        paths = sorted(found)
        for path in paths:
            _file(state, path, match, depth + 1)


def _set(target: dict[str, list[str]], keyword: str, args: list[str]) -> None:
    value = " ".join(args)
    if keyword in LISTS:
        target.setdefault(keyword, []).extend(args if keyword != "hostkey" else [value])
    elif keyword not in target:
        target[keyword] = [value]


def _lines(text: str) -> Iterator[tuple[str, list[str]]]:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if not words:
            continue
        keyword, args = words[0].lower(), words[1:]
        if "=" in keyword:  # Keyword=value
            keyword, _, first = keyword.partition("=")
            args = [first, *args] if first else args
        yield ALIASES.get(keyword, keyword), args


def _matches(args: list[str], conn: ConnInfo, notes: list[str]) -> bool | None:
    """Whether the block applies; None when it cannot be told here (the caller fails closed)."""
    pairs = list(zip(args[::2], args[1::2], strict=False))
    if [a.lower() for a in args] == ["all"]:
        return True
    if not pairs or len(args) % 2:
        notes.append(f"Match {' '.join(args)}: malformed")
        return None
    ok = True
    for criterion, value in pairs:
        kind = criterion.lower()
        if kind == "user":
            ok &= _pattern_list(conn.user, value)
        elif kind == "group" and conn.groups is not None:
            ok &= any(_pattern_list(group, value) for group in conn.groups)
        elif kind == "host":
            ok &= _pattern_list(conn.host or conn.addr, value)
        elif kind in ("address", "localaddress"):
            ok &= _address_list(conn.addr if kind == "address" else conn.laddr, value)
        elif kind == "localport":
            ok &= _pattern_list(conn.lport, value)
        else:
            notes.append(f"Match {criterion} cannot be evaluated here")
            return None
    return ok


def _pattern_list(subject: str, patterns: str) -> bool:
    positive = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(subject, pattern.lstrip("!")):
            if negated:
                return False
            positive = True
    return positive


def _address_list(addr: str, patterns: str) -> bool:
    positive = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _address_match(addr, pattern.lstrip("!")):
            if negated:
                return False
            positive = True
    return positive


def _address_match(addr: str, pattern: str) -> bool:
    if "/" in pattern:
        try:
            return ipaddress.ip_address(addr) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(addr, pattern)
