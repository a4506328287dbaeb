"""The static audit: load the project, run every static rule, collect a Report."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamal_secure.config.load import EmptyConfig, Project, destination_names, load_project
from kamal_secure.facts.keys import gather, gather_ca
from kamal_secure.policy import waivers
from kamal_secure.policy.file import Policy
from kamal_secure.report.model import Finding, Report
from kamal_secure.rules.base import Context, run_checks
from kamal_secure.rules.registry import ALL_RULES

if TYPE_CHECKING:
    from kamal_secure.remote.fleet import Certify


def run_static(
    config_file: str,
    destination: str | None,
    root: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> Report:
    return static_report(load_project(config_file, destination, root), settings)


def static_report(project: Project, settings: dict[str, Any] | None = None) -> Report:
    """Every static rule on an already loaded project (ours, or Kamal's own resolution)."""
    settings = settings or {}
    keys = gather(project.get("ssh", "keys"), project.root)
    ca = gather_ca(settings.get("ca"), project.root)
    ctx = Context(project, settings, keys, agent_socket=bool(os.environ.get("SSH_AUTH_SOCK")),
                  ca=ca)
    report = Report(findings=list(run_checks(ALL_RULES, ctx)))
    report.checked.extend(source.name for source in project.sources)
    report.sources.extend((source.name, source.masked.text) for source in project.sources)
    return report


def targets(config_file: str, destination: str | None, root: Path | None = None,
            ) -> list[str | None]:
    """What `scan` audits: the config asked for, or, when the base cannot be deployed on its
    own (no hosts, require_destination: true) and no -d was given, every destination."""
    if destination is not None:
        return [destination]
    try:
        project = load_project(config_file, None, root)
    except EmptyConfig:
        base = Path(config_file).expanduser()
        names = destination_names(base if base.is_absolute() else (root or Path.cwd()) / base)
        return list(names) if names else [None]
    if project.deployable_alone() or not project.destinations:
        return [None]
    return list(project.destinations)


def _label(destinations: list[str]) -> str:
    names = ", ".join(f"-d {name}" for name in destinations)
    return f"[{names}] "


def combine(reports: list[tuple[str | None, Report]], expanded: bool = True) -> Report:
    """One report over several destinations: each finding names the destinations it holds
    for; a finding that is identical in several (the base file's) is listed once."""
    if len(reports) == 1 and not expanded:
        return reports[0][1]
    seen: dict[tuple[Any, ...], tuple[Finding, list[str]]] = {}
    combined = Report()
    for name, report in reports:
        for finding in report.findings:
            key = (finding.rule, finding.severity, finding.location, finding.message)
            seen.setdefault(key, (finding, []))[1].append(name or "")
        combined.problems.extend(p for p in report.problems if p not in combined.problems)
        combined.checked.extend(c for c in report.checked if c not in combined.checked)
        combined.sources.extend(s for s in report.sources if s not in combined.sources)
    combined.findings = [replace(f, message=_label(names) + f.message)
                         for f, names in seen.values()]
    return combined


def evaluate(
    config_file: str,
    destination: str | None,
    policy: Policy,
    *,
    inline: bool | None = None,
    baseline: frozenset[str] = frozenset(),
    live: bool = False,
    hosts: Iterable[str] = (),
    roles: Iterable[str] = (),
    every_destination: bool = False,
    allow_proxy_command: bool = False,
    exact_hosts: tuple[str, list[str]] | None = None,
    drift: bool | None = None,
    certify: Certify | None = None,
) -> Report:
    """Every check the gate runs (the live host checks when ``live``), policy applied.

    ``every_destination`` (scan): a base file that cannot be deployed alone is audited
    through each of its destinations instead (see ``targets``).
    ``allow_proxy_command``: run ``ssh.proxy_command`` to reach the hosts (the gate and
    hooks say yes: Kamal runs it next; ``scan`` only when the user says so).
    ``drift``: compare the hosts with .kamal/secure-state.json (None: when it exists).
    ``certify``: certificate mode's login keys for the live checks (see ``audit_hosts``)."""
    names = targets(config_file, destination) if every_destination else [destination]
    reports = []
    for name in names:
        report = run_static(config_file, name, settings=policy.settings())
        if live:
            from kamal_secure.audit.hosts import audit_hosts, merge

            merge(report, audit_hosts(config_file, name, hosts, roles,
                                      policy=policy.hosts, ca=policy.certificates.ca,
                                      allow_proxy_command=allow_proxy_command,
                                      exact=exact_hosts, drift=drift, certify=certify))
        reports.append((name, report))
    report = combine(reports, expanded=names != [destination])
    return waivers.apply(report, policy, report.sources, inline=inline, baseline=baseline)
