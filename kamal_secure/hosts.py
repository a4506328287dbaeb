"""The live host checks as a Report: inventory -> fleet (lazy paramiko) -> host rules.

Importing this module costs no paramiko; only ``audit_hosts`` pulls it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamal_secure.config.inventory import build_inventory
from kamal_secure.config.load import load_project
from kamal_secure.host_policy import HostPolicy, host_policy_from, load_host_policy
from kamal_secure.report.model import Location, Problem, Report
from kamal_secure.rules import host
from kamal_secure.rules.registry import get

if TYPE_CHECKING:
    from kamal_secure.remote.fleet import FleetResult

OFFLINE_ENV = "KAMAL_SECURE_OFFLINE"


def audit_hosts(
    config_file: str,
    destination: str | None,
    hosts: Iterable[str] = (),
    roles: Iterable[str] = (),
    root: Path | None = None,
    progress: bool | None = None,
    settings: dict[str, Any] | None = None,
) -> Report:
    project = load_project(config_file, destination, root)
    inventory = build_inventory(project, hosts, roles)
    # the gate has read .kamal/secure.yml already: use its hosts: section, don't read it again
    policy = (host_policy_from(settings) if settings is not None
              else load_host_policy(project.root))
    from kamal_secure.remote.fleet import check_fleet

    result = check_fleet(inventory, project.root, policy.concurrency, policy.timeout, progress)
    return fleet_report(result, policy)


def fleet_report(result: FleetResult, policy: HostPolicy, report: Report | None = None) -> Report:
    """The host rules over what the fleet check gathered; problems kept as problems."""
    report = Report() if report is None else report
    for target, facts in result.facts:
        origin = target.origin
        where = Location(origin.file, origin.line, origin.column, host=facts.label)
        report.findings.extend(host.check_host(facts, policy, where))
        source = facts.sshd.source if facts.sshd is not None else "live probe only"
        report.checked.append(f"host {facts.label}: {source}")
    for problem in result.problems:
        label = problem.target.label
        origin = problem.target.origin
        hint = f" ({problem.hint})" if problem.hint else ""
        report.problems.append(Problem(
            what=f"{problem.rule} {get(problem.rule).title}",
            message=f"{problem.message}{hint} [named at {origin.file}:{origin.line}]",
            host=label))
    return report


def merge(into: Report, other: Report) -> Report:
    into.findings.extend(other.findings)
    into.problems.extend(other.problems)
    into.checked.extend(other.checked)
    return into
