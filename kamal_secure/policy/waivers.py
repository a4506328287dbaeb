"""Apply the policy to a report: rule switches, severity overrides, waivers, baseline."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from kamal_secure.policy.file import Policy, Waiver
from kamal_secure.report.model import Finding, Location, Report, Suppression
from kamal_secure.rules import meta
from kamal_secure.rules.base import Rule

INLINE_RE = re.compile(
    r"#\s*kamal-secure:\s*ignore\b[\s:]*(?P<ids>KS\d{3}(?:\s*,\s*KS\d{3})*)(?P<rest>.*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Inline:
    file: str
    line: int  # the line of the comment
    target: int  # the line it waives
    rules: frozenset[str]
    reason: str


def _target(lines: list[str], index: int, comment_at: int) -> int:
    if lines[index][:comment_at].strip():
        return index + 1
    for later in range(index + 1, len(lines)):
        stripped = lines[later].strip()
        if stripped and not stripped.startswith("#"):
            return later + 1
    return index + 1


def parse_inline(file: str, text: str) -> Iterator[Inline]:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = INLINE_RE.search(line)
        if not match:
            continue
        ids = frozenset(i.strip().upper() for i in match.group("ids").split(","))
        reason = match.group("rest").strip().lstrip("-").strip()
        yield Inline(file, index + 1, _target(lines, index, match.start()), ids, reason)


def _matches(waiver: Waiver, finding: Finding) -> bool:
    loc = finding.location
    if waiver.rule != finding.rule:
        return False
    checks = ((waiver.file, loc.file), (waiver.path, loc.path), (waiver.host, loc.host))
    return all(pattern is None or (value is not None and fnmatchcase(value, pattern))
               for pattern, value in checks)


def _nearest(waiver: Waiver, findings: list[Finding]) -> str:
    """For a waiver whose path matches nothing: the closest path a finding of its rule has."""
    if waiver.path is None:
        return ""
    paths = sorted({f.location.path for f in findings
                    if f.rule == waiver.rule and f.location.path})
    if not paths:
        return f" ({waiver.rule} found nothing to waive)"
    close = difflib.get_close_matches(waiver.path, paths, n=1, cutoff=0.0)
    return f"; its findings are at path {', '.join(paths[:5])} (did you mean `path: {close[0]}`?)"


def _meta(rule: Rule, message: str, where: str) -> Finding:
    file, _, line = where.rpartition(":")
    return rule.finding(message, Location(file=file, line=int(line) if line.isdigit() else 1))


class _Applier:
    def __init__(self, policy: Policy, today: dt.date, inline: list[Inline]) -> None:
        self.policy = policy
        self.today = today
        self.inline = [w for w in inline if w.reason]
        self.used: set[Waiver] = set()
        self.expired_hits: dict[Waiver, list[Finding]] = {}

    def suppress(self, finding: Finding) -> Finding:
        loc = finding.location
        for w in self.inline:
            if finding.rule in w.rules and loc.file == w.file and loc.line == w.target:
                return replace(finding, suppression=Suppression(
                    "inSource", w.reason, f"{w.file}:{w.line}"))
        for waiver in self.policy.waivers:
            if not _matches(waiver, finding):
                continue
            if waiver.expires < self.today:
                self.expired_hits.setdefault(waiver, []).append(finding)
                continue
            self.used.add(waiver)
            return replace(finding, suppression=Suppression(
                "external", f"{waiver.reason} (owner {waiver.owner}, until {waiver.expires})",
                waiver.where))
        return finding

    def meta_findings(self, inline_all: list[Inline],
                      findings: list[Finding]) -> Iterator[Finding]:
        for w in inline_all:
            if not w.reason:
                yield _meta(meta.INLINE_NO_REASON, f"inline waiver for {', '.join(sorted(w.rules))}"
                            " has no reason and is not honoured", f"{w.file}:{w.line}")
        for waiver in self.policy.waivers:
            if waiver.expires < self.today:
                hits = len(self.expired_hits.get(waiver, []))
                yield _meta(meta.WAIVER_EXPIRED, f"waiver for {waiver.rule} expired on "
                            f"{waiver.expires}; {hits} finding(s) count again", waiver.where)
            elif waiver not in self.used:
                yield _meta(meta.WAIVER_UNUSED, f"waiver for {waiver.rule} matched no finding"
                            f"{_nearest(waiver, findings)}", waiver.where)


def apply(
    report: Report,
    policy: Policy,
    sources: Iterable[tuple[str, str]] = (),
    *,
    inline: bool | None = None,
    baseline: frozenset[str] = frozenset(),
    today: dt.date | None = None,
) -> Report:
    """A new report with the policy applied. ``sources`` are (display name, text) pairs."""
    use_inline = policy.inline_waivers if inline is None else inline
    found = [w for name, text in sources for w in parse_inline(name, text)] if use_inline else []
    applier = _Applier(policy, today or dt.date.today(), found)
    findings: list[Finding] = []
    for finding in report.findings:
        if finding.rule in policy.disabled:
            continue
        severity = policy.severities.get(finding.rule, finding.severity)
        findings.append(applier.suppress(replace(finding, severity=severity)))
    findings.extend(applier.meta_findings(found, report.findings))
    findings = [replace(f, in_baseline=f.fingerprint() in baseline) for f in findings]
    shown = [f for f in findings if f.severity >= policy.report_on or not f.counts]
    return Report(findings=shown, problems=list(report.problems), checked=list(report.checked))
