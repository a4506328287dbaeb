"""Findings, severities and the report: the one data shape every reporter reads."""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from dataclasses import dataclass, field

from kamal_secure.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCOMPLETE


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


@dataclass(frozen=True, order=True)
class Location:
    file: str | None = None
    line: int | None = None
    column: int | None = None
    host: str | None = None
    path: str | None = None  # YAML path, e.g. "ssh.user"

    def __post_init__(self) -> None:
        _scrub_fields(self, ("file", "host", "path"))

    def __str__(self) -> str:
        parts = []
        if self.file:
            spot = self.file
            if self.line:
                spot += f":{self.line}"
                if self.column:
                    spot += f":{self.column}"
            parts.append(spot)
        if self.host:
            parts.append(f"host {self.host}")
        return " ".join(parts) or "(project)"


@dataclass(frozen=True)
class Suppression:
    """Why a finding does not count: a waiver in the policy file or inline in deploy.yml."""

    kind: str  # "external" (policy file) or "inSource" (inline comment)
    justification: str
    where: str  # "file:line" of the waiver

    def __post_init__(self) -> None:
        _scrub_fields(self, ("justification", "where"))


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    title: str
    message: str
    location: Location = field(default_factory=Location)
    evidence: str | None = None  # always redacted before it gets here
    fix: str | None = None
    suppression: Suppression | None = None
    in_baseline: bool = False

    def __post_init__(self) -> None:
        """Whatever rule wrote it, a finding never carries a secret-looking value whole."""
        _scrub_fields(self, ("message", "evidence"))

    @property
    def counts(self) -> bool:
        """Does this finding take part in the verdict?"""
        return self.suppression is None and not self.in_baseline

    def fingerprint(self) -> str:
        """Stable across runs and line shifts: rule, file, YAML path, host, message."""
        loc = self.location
        key = "\x1f".join([self.rule, loc.file or "", loc.path or "", loc.host or "",
                           self.message])
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def sort_key(self) -> tuple[int, str, int, str, str]:
        loc = self.location
        return (-self.severity, loc.file or "", loc.line or 0, loc.host or "", self.rule)


@dataclass(frozen=True)
class Problem:
    """A check that could not complete (exit 3): host unreachable, key unknown, ..."""

    what: str
    message: str
    host: str | None = None
    rule: str | None = None  # the rule whose check could not complete (KS722, KS801..KS804)

    def __post_init__(self) -> None:
        _scrub_fields(self, ("what", "message", "host"))


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was looked at, for the summary
    sources: list[tuple[str, str]] = field(default_factory=list)  # (file, text) for inline waivers

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=Finding.sort_key)

    def active(self) -> list[Finding]:
        return [f for f in self.sorted_findings() if f.counts]

    def counts(self) -> dict[str, int]:
        counter = Counter(f.severity.label for f in self.findings if f.counts)
        return {s.label: counter.get(s.label, 0) for s in reversed(Severity)}

    def exit_code(self, fail_on: Severity) -> int:
        if self.problems:
            return EXIT_INCOMPLETE
        if any(f.severity >= fail_on for f in self.findings if f.counts):
            return EXIT_FINDINGS
        return EXIT_CLEAN


def _scrub_fields(obj: object, names: tuple[str, ...]) -> None:
    from kamal_secure.report.safe import scrub  # safe imports this module

    for name in names:
        value = getattr(obj, name)
        if isinstance(value, str):
            object.__setattr__(obj, name, scrub(value))


def redact(value: str, keep: int = 4) -> str:
    """Show at most a short prefix and the length of a secret: ``ghp_…(40 chars)``."""
    if len(value) <= keep * 2:
        return f"…({len(value)} chars)"
    return f"{value[:keep]}…({len(value)} chars)"
