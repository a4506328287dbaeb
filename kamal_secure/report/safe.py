"""The one way to show text we did not write: secrets redacted, control characters escaped.

``scrub`` redacts what looks like a secret anywhere in a message (the same test and the
same ``redact`` as the secret rules: vendor token shapes, private key blocks, passwords in
URLs, ``NAME=value`` / ``NAME: value`` under a secret-like name). Findings, problems and
errors pass through it whatever rule or module wrote them.

``visible`` escapes control characters, escape sequences and the Unicode controls that
reorder or hide text (bidi overrides, zero-width characters) as ``\\x1b`` / ``\\u202e``:
for text and GitHub output, error lines and banners. JSON and SARIF escape C0 themselves;
``json_text`` adds the rest. ``guard_output`` applies ``visible`` to everything our
commands write to stdout and stderr (not on the passthrough path: that imports nothing).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from kamal_secure.report.model import redact
from kamal_secure.secretscan import KEYWORD, VENDOR, _is_ref_part, looks_secret

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff]")
CONTROL_ALL = re.compile(f"[\t\n{CONTROL.pattern[1:-1]}]")
PEM = re.compile(r"-----BEGIN[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----.*?"
                 r"(-----END[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----|\Z)", re.DOTALL)
# The secret rules' vendor shapes without word boundaries: in text we print, a token glued
# to other characters ("5432sk_live_...") is still a token.
GLUED = tuple((name, re.compile(pattern.pattern.replace(r"\b", ""))) for name, pattern in VENDOR
              if name != "private key block")
ANY_VENDOR = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern in GLUED)
                        + "|-----BEGIN")
ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z_][\w.-]*)(?P<sep>[\"']?\s*[=:]\s*)(?P<q>[\"']?)"
                        r"(?P<value>[^\s\"',;)\]}]{8,})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, newlines: bool = False) -> str:
    """Control characters as visible escapes; ``newlines`` keeps \\n (and tabs)."""
    return (CONTROL if newlines else CONTROL_ALL).sub(_escape, text)


def json_text(text: str) -> str:
    """A JSON document with the controls JSON leaves raw (C1, bidi, zero-width) escaped."""
    return CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _vendor(match: re.Match[str], name: str) -> str:
    if name == "URL with a password":
        password = match.group(1)
        if _is_ref_part(password):
            return match.group(0)
        return match.group(0).replace(f":{password}@", f":{redact(password)}@")
    return redact(match.group(0))


# SSH algorithm and key type names and key fingerprints: public words that look random
# ("host key: ecdsa-sha2-nistp256", "CA key: SHA256:...")
ALGORITHM = re.compile(r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|rsa-sha2-\d+|sk-[\w.-]+"
                       r"|[\w.-]+@openssh\.com)(-cert-v01@openssh\.com)?"
                       r"|SHA256:[A-Za-z0-9+/]{43}|MD5(:[0-9a-f]{2}){16}")


def _assignment(match: re.Match[str]) -> str:
    name, value = match.group("name"), match.group("value")
    if ALGORITHM.fullmatch(value):
        return match.group(0)
    if not KEYWORD.search(name.rsplit(".", 1)[-1]) or looks_secret(name, value) is None:
        return match.group(0)
    return f"{name}{match.group('sep')}{match.group('q')}{redact(value)}"


@functools.lru_cache(maxsize=4096)
def scrub(text: str) -> str:
    """``text`` with every substring that looks like a secret shown only as ``redact`` does."""
    if not text:
        return text
    if ANY_VENDOR.search(text):  # one pass decides whether the dozen patterns need to run
        text = PEM.sub(lambda m: redact(m.group(0)), text)
        for name, pattern in GLUED:
            text = pattern.sub(lambda m, n=name: _vendor(m, n), text)  # type: ignore[misc]
    if "=" not in text and ":" not in text:
        return text
    return ASSIGNMENT.sub(_assignment, text)


def shown(text: str, newlines: bool = False) -> str:
    """What a value we did not write looks like on a terminal: scrubbed, then escaped."""
    return visible(scrub(text), newlines)


class GuardedStream:
    """A text stream that escapes control characters in everything written to it."""

    def __init__(self, stream: TextIO) -> None:
        self.unguarded = stream

    def write(self, text: str) -> int:
        self.unguarded.write(visible(text, newlines=True))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unguarded, name)


def raw(stream: TextIO) -> TextIO:
    """The stream under a guard (for rich, whose own output is escaped value by value)."""
    inner = getattr(stream, "unguarded", None)
    return inner if inner is not None else stream


@contextmanager
def guard_output() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = GuardedStream(sys.stdout)
    sys.stderr = GuardedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
