"""The live host checks as a Report: inventory -> fleet (lazy paramiko) -> host rules.

Importing this module costs no paramiko; only ``audit_hosts`` pulls it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamal_secure.config.inventory import build_inventory
from kamal_secure.config.load import Project, load_project
from kamal_secure.host_policy import host_policy_from, load_host_policy
from kamal_secure.report.model import Location, Problem, Report
from kamal_secure.rules import host
from kamal_secure.rules.registry import get

if TYPE_CHECKING:
    from kamal_secure.drift import Watch

OFFLINE_ENV = "KAMAL_SECURE_OFFLINE"


def audit_hosts(
    config_file: str,
    destination: str | None,
    hosts: Iterable[str] = (),
    roles: Iterable[str] = (),
    root: Path | None = None,
    progress: bool | None = None,
    settings: dict[str, Any] | None = None,
    drift: bool | None = None,
) -> Report:
    project = load_project(config_file, destination, root)
    hosts, roles = list(hosts), list(roles)
    inventory = build_inventory(project, hosts, roles)
    # the gate has read .kamal/secure.yml already: use its hosts: section, don't read it again
    policy = (host_policy_from(settings) if settings is not None
              else load_host_policy(project.root))
    from kamal_secure.remote.fleet import check_fleet

    watch = _drift_watch(project, config_file, drift)
    result = check_fleet(inventory, project.root, policy.concurrency, policy.timeout, progress,
                         collect=watch.collect if watch is not None else None)
    report = Report()
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
    if watch is not None:  # drift watch (issue 18): live facts against the approved state
        found, checked = watch.findings(result, inventory.targets, bool(hosts or roles))
        report.findings.extend(found)
        report.checked.extend(checked)
    return report


def _drift_watch(project: Project, config_file: str, drift: bool | None) -> Watch | None:
    """The one hook of drift watch into the host checks: on with ``scan --drift``, and
    whenever .kamal/secure-state.json exists (``drift`` None), off with False."""
    from kamal_secure.drift import watch_for

    return watch_for(project, config_file, drift)


def merge(into: Report, other: Report) -> Report:
    into.findings.extend(other.findings)
    into.problems.extend(other.problems)
    into.checked.extend(other.checked)
    return into
