"""`kamal-secure snapshot`: read every host's security state; `--approve` records it.

Without ``--approve`` the state is printed (the file ``--approve`` would write) and what
differs from the approved state is listed on stderr. With ``--approve`` it is written to
``.kamal/secure-state.json`` atomically, and only when every host could be read.
"""

from __future__ import annotations

import os
import sys

from kamal_secure.audit import drift
from kamal_secure.commands import Parser
from kamal_secure.config.inventory import build_inventory
from kamal_secure.config.load import Project, load_project
from kamal_secure.errors import EXIT_CLEAN, EXIT_INCOMPLETE
from kamal_secure.gate.certificate import certify_in_memory
from kamal_secure.policy.file import policy_for
from kamal_secure.remote.drift_facts import HostState
from kamal_secure.report.model import Location
from kamal_secure.rules.host_access import unchecked_rule


def _parser() -> Parser:
    p = Parser(prog="kamal-secure snapshot", add_help=False,
               description="Read the hosts' security state (keys, groups, sudo rules, "
               f"listeners, sshd settings); --approve records it in {drift.STATE_FILE}.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-c", "--config-file", default="config/deploy.yml")
    p.add_argument("-d", "--destination", default=None,
                   help="only this destination's hosts (default: every destination)")
    p.add_argument("-h", "--hosts", default="", help="only these hosts (comma-separated)")
    p.add_argument("-r", "--roles", default="", help="only these roles (comma-separated)")
    p.add_argument("--approve", action="store_true",
                   help=f"write the state to {drift.STATE_FILE} (the new normal)")
    p.add_argument("--allow-proxy-command", action="store_true",
                   help="run ssh.proxy_command from deploy.yml to reach the hosts (a local "
                   "command from the repository; off by default, as for scan)")
    return p


def _projects(config_file: str, destination: str | None) -> list[Project]:
    if destination is not None:
        return [load_project(config_file, destination)]
    base = load_project(config_file)
    return [base] + [load_project(config_file, d) for d in drift.destinations(base)]


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    hosts = [h for h in opts.hosts.split(",") if h]
    roles = [r for r in opts.roles.split(",") if r]
    projects = _projects(opts.config_file, opts.destination)
    root = projects[0].root
    live, failed = _read_hosts(projects, hosts, roles, opts.allow_proxy_command)
    approved = drift.read(root)
    partial = opts.destination is not None or bool(hosts or roles)
    merged = dict(approved.hosts) if approved is not None and partial else {}
    merged.update(live)
    state = drift.State(merged)
    _summary(approved, state, live)
    for line in failed:
        sys.stderr.write(f"kamal-secure: could not read {line}\n")
    if failed:
        if opts.approve:
            sys.stderr.write(f"kamal-secure: nothing approved: {len(failed)} host(s) could not "
                             f"be read ({drift.STATE_FILE} unchanged)\n")
        return EXIT_INCOMPLETE
    if not opts.approve:
        sys.stdout.write(drift.render(state))
        return EXIT_CLEAN
    changed = drift.write(root, state)
    sys.stdout.write(f"kamal-secure: {'approved' if changed else 'unchanged,'} "
                     f"{len(state.hosts)} host(s) in {drift.STATE_FILE}"
                     f"{'; review and commit it' if changed else ''}\n")
    return EXIT_CLEAN


def _read_hosts(projects: list[Project], hosts: list[str], roles: list[str],
                allow_proxy_command: bool) -> tuple[dict[str, HostState], list[str]]:
    """Each host of every project read once: its live state, or why it could not be read."""
    from kamal_secure.remote.fleet import check_fleet

    root = projects[0].root
    full = policy_for(root)
    policy = full.hosts
    # certificate mode: log in first with a certificate held in memory (as scan does)
    certify = certify_in_memory("snapshot", full.certificates, os.environ)
    live: dict[str, HostState] = {}
    failed: list[str] = []
    for project in projects:
        inventory = build_inventory(project, hosts, roles)
        todo = tuple(t for t in inventory.targets if t.name not in live)
        if not todo:
            continue
        result = check_fleet(type(inventory)(todo, inventory.ssh), root, policy.concurrency,
                             policy.timeout, collect=drift.Watch.collect,
                             allow_proxy_command=allow_proxy_command
                             or policy.allow_proxy_command,
                             first_keys=certify(inventory.ssh) if certify else ())
        for target, _ in result.facts:
            state = result.collected.get(target.name)
            if isinstance(state, HostState):
                live[target.name] = state
        for problem in result.problems:
            rule = unchecked_rule(problem.reason)
            failed.append(f"{problem.target.label}: {rule.id} {rule.title}: {problem.message}")
    return live, failed


def _summary(approved: drift.State | None, state: drift.State,
             live: dict[str, HostState]) -> None:
    """What --approve would accept, on stderr: one line per change."""
    if approved is None:
        sys.stderr.write(f"kamal-secure: no {drift.STATE_FILE} yet: every fact is new\n")
        return
    lines = []
    for host in sorted(live):
        before = approved.hosts.get(host)
        if before is None:
            lines.append(f"new host {host}")
            continue
        lines.extend(f.message for f in drift.compare(before, live[host], host,
                                                      Location(host=host), judged=True)
                     if f.severity > 0)
    lines.extend(f"host {h} leaves the state" for h in sorted(approved.hosts)
                 if h not in state.hosts)
    for line in lines:
        sys.stderr.write(f"  {line}\n")
    if not lines:
        sys.stderr.write("kamal-secure: the hosts match the approved state\n")
