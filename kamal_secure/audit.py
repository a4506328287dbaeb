"""The static audit: load the project, run every static rule, collect a Report."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kamal_secure import waivers
from kamal_secure.config.load import load_project
from kamal_secure.keyfacts import gather
from kamal_secure.policy import Policy
from kamal_secure.report.model import Report
from kamal_secure.rules.base import Context, run_checks
from kamal_secure.rules.registry import ALL_RULES


def run_static(
    config_file: str,
    destination: str | None,
    root: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> Report:
    project = load_project(config_file, destination, root)
    keys = gather(project.get("ssh", "keys"), project.root)
    ctx = Context(project, settings or {}, keys)
    report = Report(findings=list(run_checks(ALL_RULES, ctx)))
    report.checked.extend(source.name for source in project.sources)
    report.sources.extend((source.name, source.masked.text) for source in project.sources)
    return report


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
    drift: bool | None = None,
) -> Report:
    """Every check the gate runs (the live host checks when ``live``), policy applied.

    ``drift``: compare the hosts with .kamal/secure-state.json (None: when it exists)."""
    report = run_static(config_file, destination, settings=policy.settings())
    if live:
        from kamal_secure.hosts import audit_hosts, merge

        merge(report, audit_hosts(config_file, destination, hosts, roles,
                                  settings=policy.hosts, drift=drift))
    return waivers.apply(report, policy, report.sources, inline=inline, baseline=baseline)
