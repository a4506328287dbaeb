"""The live host checks as a Report: inventory -> fleet (lazy paramiko) -> host rules.

Importing this module costs no paramiko; only ``audit_hosts`` pulls it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.config.inventory import build_inventory, exact_hosts, local_registry
from kamal_secure.config.load import Project, load_project
from kamal_secure.facts.keys import CaFacts, gather_ca
from kamal_secure.policy.file import HostPolicy, policy_for
from kamal_secure.report.model import Location, Problem, Report
from kamal_secure.rules import host, host_access
from kamal_secure.rules.host_access import unchecked_rule
from kamal_secure.rules.registry import get

if TYPE_CHECKING:
    from kamal_secure.audit.drift import Watch
    from kamal_secure.remote.fleet import Certify, FleetResult

OFFLINE_ENV = "KAMAL_SECURE_OFFLINE"


def audit_hosts(
    config_file: str,
    destination: str | None,
    hosts: Iterable[str] = (),
    roles: Iterable[str] = (),
    root: Path | None = None,
    progress: bool | None = None,
    policy: HostPolicy | None = None,
    allow_proxy_command: bool = False,
    exact: tuple[str, list[str]] | None = None,
    drift: bool | None = None,
    ca: Path | None = None,
    certify: Certify | None = None,
) -> Report:
    """``exact``: (where they come from, host names): check exactly these hosts (a Kamal
    hook's KAMAL_HOSTS), also those the config does not name, instead of -h/-r filters.
    ``ca``: the policy's ``certificates.ca`` (both read from the policy file when ``policy``
    is None). ``certify``: certificate mode's keys to log in with first (``scan``: a
    certificate minted in memory), given how the hosts are reached."""
    project = load_project(config_file, destination, root)
    hosts, roles = list(hosts), list(roles)
    inventory = build_inventory(project, hosts, roles)
    if exact is not None:
        inventory = exact_hosts(inventory, exact[1], exact[0])
    # the gate has read .kamal/secure.yml already: use its hosts: part, don't read it again
    if policy is None:
        full = policy_for(project.root)
        policy, ca = full.hosts, full.certificates.ca
    from kamal_secure.remote.fleet import check_fleet

    allow = allow_proxy_command or policy.allow_proxy_command
    watch = _drift_watch(project, config_file, drift)
    result = check_fleet(inventory, project.root, policy.concurrency, policy.timeout, progress,
                         allow_proxy_command=allow,
                         collect=watch.collect if watch is not None else None,
                         first_keys=certify(inventory.ssh) if certify is not None else ())
    report = fleet_report(result, policy, registry=local_registry(project),
                          ca=gather_ca(ca, project.root))
    if watch is not None:  # drift watch (issue 18): live facts against the approved state
        found, checked = watch.findings(result, inventory.targets,
                                         bool(hosts or roles or exact))
        report.findings.extend(found)
        report.checked.extend(checked)
    return report


def fleet_report(result: FleetResult, policy: HostPolicy, report: Report | None = None,
                 registry: str | None = None, ca: CaFacts | None = None) -> Report:
    """The host rules over what the fleet check gathered; problems kept as problems.
    ``registry``: the config's local registry (KS713 allows the forwarding it needs).
    ``ca``: the project's CA in certificate mode (the KS724-KS728 certificate rules)."""
    report = Report() if report is None else report
    for target, facts in result.facts:
        origin = target.origin
        where = Location(origin.file, origin.line, origin.column, host=facts.label)
        report.findings.extend(host.check_host(facts, policy, where, registry, ca))
        source = facts.sshd.source if facts.sshd is not None else "live probe only"
        report.checked.append(f"host {facts.label}: {source}")
        unknown = host_access.undecided(facts)
        if unknown:  # a fact we could not establish is never a safe value: incomplete
            report.problems.append(Problem(
                what=f"KS722 {get('KS722').title}",
                message=f"{', '.join(unknown)} unknown: the effective sshd settings could not "
                f"be established and the live probe cannot tell "
                f"[named at {origin.file}:{origin.line}]", host=facts.label, rule="KS722"))
    for problem in result.problems:
        label = problem.target.label
        origin = problem.target.origin
        hint = f" ({problem.hint})" if problem.hint else ""
        if ca is not None and problem.reason == "login_failed":
            hint += (" (certificate mode: the gate logs in with the deploy key's "
                     "certificate, KEY-cert.pub, which Kamal's net-ssh also offers instead "
                     "of the key; a host that does not trust the project's CA refuses it: "
                     "`kamal-secure harden --trust-ca CA.pub` there first)")
        rule = unchecked_rule(problem.reason)
        report.problems.append(Problem(
            what=f"{rule.id} {rule.title}",
            message=f"{problem.message}{hint} [named at {origin.file}:{origin.line}]",
            host=label, rule=rule.id))
    return report


def _drift_watch(project: Project, config_file: str, drift: bool | None) -> Watch | None:
    """The one hook of drift watch into the host checks: on with ``scan --drift``, and
    whenever .kamal/secure-state.json exists (``drift`` None), off with False."""
    from kamal_secure.audit.drift import watch_for

    return watch_for(project, config_file, drift)


def merge(into: Report, other: Report) -> Report:
    into.findings.extend(other.findings)
    into.problems.extend(other.problems)
    into.checked.extend(other.checked)
    return into
