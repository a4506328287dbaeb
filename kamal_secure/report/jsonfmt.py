"""The versioned JSON report: the same shape with zero findings."""

from __future__ import annotations

import json
from typing import Any

from kamal_secure import __version__
from kamal_secure.report.model import Report, Severity
from kamal_secure.report.safe import json_text

FORMAT_VERSION = "1"


def as_dict(report: Report, fail_on: Severity, exit_code: int,
            show_suppressed: bool = True) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "tool": {"name": "kamal-secure", "version": __version__},
        "checked": list(report.checked),
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity.label,
                "title": f.title,
                "message": f.message,
                "file": f.location.file,
                "line": f.location.line,
                "column": f.location.column,
                "host": f.location.host,
                "path": f.location.path,
                "evidence": f.evidence,
                "fix": f.fix,
                "fingerprint": f.fingerprint(),
                "suppressed": None if f.suppression is None else {
                    "kind": f.suppression.kind,
                    "justification": f.suppression.justification,
                    "where": f.suppression.where,
                },
                "in_baseline": f.in_baseline,
            }
            for f in report.sorted_findings()
            if show_suppressed or f.suppression is None
        ],
        "problems": [{"what": p.what, "message": p.message, "host": p.host, "rule": p.rule}
                     for p in report.problems],
        "summary": {"by_severity": report.counts(), "total": len(report.active()),
                    "suppressed": sum(1 for f in report.findings if f.suppression),
                    "in_baseline": sum(1 for f in report.findings if f.in_baseline),
                    "fail_on": fail_on.label, "exit_code": exit_code},
    }


def render(report: Report, fail_on: Severity, exit_code: int,
           show_suppressed: bool = True) -> str:
    data = as_dict(report, fail_on, exit_code, show_suppressed)
    return json_text(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"
