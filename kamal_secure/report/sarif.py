"""SARIF 2.1.0 for GitHub code scanning."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from kamal_secure import __version__
from kamal_secure.report.model import Finding, Problem, Report, Severity
from kamal_secure.report.safe import json_text
from kamal_secure.rules import docs
from kamal_secure.rules.base import Rule

SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                     Severity.LOW: "3.0", Severity.INFO: "0.0"}
LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
         Severity.LOW: "note", Severity.INFO: "note"}


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": "".join(w.capitalize() for w in rule.title.replace("`", "").split()[:8]
                        if w.isalnum()) or rule.id,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.rationale},
        "help": {"text": f"{rule.rationale}\n\nFix: {rule.fix}", "markdown": docs.page(rule)},
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[rule.severity],
                       "tags": ["security", rule.family], "precision": "high",
                       "problem.severity": LEVEL[rule.severity]},
    }


def _artifact(file: str) -> dict[str, Any]:
    path = PurePosixPath(file)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": str(path), "uriBaseId": "%SRCROOT%"}


def _result(finding: Finding, index: dict[str, int], config_file: str) -> dict[str, Any]:
    loc = finding.location
    region: dict[str, int] = {"startLine": max(loc.line or 1, 1)}
    if loc.column:
        region["startColumn"] = loc.column
    message = finding.message + (f" (host {loc.host})" if loc.host else "")
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "level": LEVEL[finding.severity],
        "message": {"text": message + (f" Fix: {finding.fix}" if finding.fix else "")},
        "locations": [{"physicalLocation": {"artifactLocation": _artifact(loc.file or
                                                                          config_file),
                                            "region": region}}],
        "partialFingerprints": {"kamalSecure/v1": finding.fingerprint()},
        "properties": {"severity": finding.severity.label},
    }
    if finding.rule in index:
        result["ruleIndex"] = index[finding.rule]
    if loc.host:
        result["properties"]["host"] = loc.host
    if finding.suppression:
        result["suppressions"] = [{"kind": finding.suppression.kind, "status": "accepted",
                                   "justification": finding.suppression.justification}]
    if finding.in_baseline:
        result["baselineState"] = "unchanged"
    return result


def as_dict(report: Report, root_uri: str,
            config_file: str = "config/deploy.yml") -> dict[str, Any]:
    """Only the rules that have results are described (the rest are `kamal-secure rules`);
    no helpUri: the rule pages ship inside the package (`kamal-secure explain ID`)."""
    from kamal_secure.rules.registry import ALL_RULES

    seen = {f.rule for f in report.findings} | {p.rule for p in report.problems if p.rule}
    used = [rule for rule in ALL_RULES if rule.id in seen]
    index = {rule.id: i for i, rule in enumerate(used)}
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "kamal-secure", "version": __version__,
                            "semanticVersion": __version__,
                            "rules": [_rule(r) for r in used]}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": root_uri}},
        "results": [_result(f, index, config_file) for f in report.sorted_findings()],
        "invocations": [{
            "executionSuccessful": not report.problems,
            "toolExecutionNotifications": [_notification(p, index) for p in report.problems],
        }],
    }
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [run]}


def _notification(problem: Problem, index: dict[str, int]) -> dict[str, Any]:
    """A check that could not complete, tied to the rule it could not decide."""
    text = f"{problem.what}: {problem.message}" + (f" (host {problem.host})"
                                                    if problem.host else "")
    note: dict[str, Any] = {"level": "error", "message": {"text": text}}
    if problem.rule is not None:
        note["associatedRule"] = {"id": problem.rule, "index": index[problem.rule]}
    return note


def render(report: Report, root_uri: str, config_file: str = "config/deploy.yml") -> str:
    data = as_dict(report, root_uri, config_file)
    return json_text(json.dumps(data, ensure_ascii=False, separators=(",", ":"))) + "\n"
