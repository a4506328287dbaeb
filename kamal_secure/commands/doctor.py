"""`kamal-secure doctor`: the ordered commands that would make this project pass.

It runs the same checks as `scan` (the live host checks unless --offline) and turns the
findings into steps, in the order that works: a deploy key and the ssh block, a deploy user
on the hosts, `authorize`, `harden`, `pin-hosts`, then the config edits that remain.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from kamal_secure.audit.static import evaluate
from kamal_secure.commands import Parser
from kamal_secure.config.load import loaded_once
from kamal_secure.errors import EXIT_CLEAN
from kamal_secure.gate.certificate import certify_in_memory
from kamal_secure.policy.file import load_policy
from kamal_secure.report.model import Finding, Report, Severity

KEYGEN_RULES = {"KS100", "KS101", "KS601"}
AUTHORIZE_RULES = {"KS718", "KS804"}
PIN_RULES = {"KS802"}
HOST_SIDE = ("KS6", "KS7", "KS8")


@dataclass(frozen=True)
class Step:
    command: str
    needs: str


def _parser() -> Parser:
    p = Parser(prog="kamal-secure doctor", add_help=False,
               description="Print the ordered commands that would make this project pass "
               "the gate. Connects to every host unless --offline.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-c", "--config-file", default="config/deploy.yml")
    p.add_argument("-d", "--destination", default=None)
    p.add_argument("--offline", action="store_true",
                   help="static checks only: host steps are listed without checking the hosts")
    return p


def _rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def plan(report: Report, fail_on: Severity, live: bool, args: str) -> list[Step]:
    active = [f for f in report.active() if f.severity >= fail_on or f.rule in AUTHORIZE_RULES]
    rules = _rules(active)
    problems = " ".join(p.what for p in report.problems)
    steps: list[Step] = []
    root_user = bool(rules & {"KS100", "KS103"})
    if rules & KEYGEN_RULES:
        user = " --user deploy" if root_user else ""
        steps.append(Step(f"kamal-secure keygen --write-config{user}{args}",
                          "nothing: a new ed25519 key and the ssh block in deploy.yml"))
    if root_user:
        steps.append(Step("on every host, as root: useradd --create-home --groups docker deploy; "
                          "then copy a key that logs in today to ~deploy/.ssh/authorized_keys",
                          "root on the hosts; Docker installed (`kamal server bootstrap`)"))
    unknown = "KS802" in problems or rules & PIN_RULES
    if unknown:
        steps.append(Step(f"kamal-secure pin-hosts --expect SHA256:...{args}",
                          "each host's key fingerprint, read on the host or its console: "
                          "authorize and harden verify host keys"))
    host_work = not live or bool(rules & AUTHORIZE_RULES) or bool(report.problems)
    if host_work or rules & KEYGEN_RULES:
        steps.append(Step(f"kamal-secure authorize{args}",
                          "a key that logs in as ssh.user today (your agent, or --identity "
                          "PATH)"))
    if not live or any(r.startswith("KS7") and r not in AUTHORIZE_RULES for r in rules) \
            or rules & KEYGEN_RULES:
        steps.append(Step(f"kamal-secure harden{args}",
                          "sudo on every host for ssh.user; the deploy key authorized"))
    if not unknown and (not live or bool(report.problems) or rules & KEYGEN_RULES):
        steps.append(Step(f"kamal-secure pin-hosts{args}",
                          "host keys you trust already (~/.ssh/known_hosts) or --expect FP"))
    handled = KEYGEN_RULES | AUTHORIZE_RULES | PIN_RULES | ({"KS103"} if root_user else set())
    for f in active:
        if f.rule not in handled and not f.rule.startswith(HOST_SIDE):
            where = f" ({f.location.path})" if f.location.path else ""
            steps.append(Step(f"edit {f.location}{where}: {f.fix or f.title}",
                              f"{f.rule}: {f.message}"))
    return steps


@loaded_once()  # reads only: each project is loaded once
def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    extra = (f" -c {opts.config_file}" if opts.config_file != "config/deploy.yml" else "") + \
        (f" -d {opts.destination}" if opts.destination else "")
    policy = load_policy()
    certify = None if opts.offline else certify_in_memory("doctor", policy.certificates,
                                                          os.environ)
    report = evaluate(opts.config_file, opts.destination, policy, live=not opts.offline,
                      certify=certify)
    steps = plan(report, policy.fail_on, not opts.offline, extra)
    out = sys.stdout
    if not steps and report.exit_code(policy.fail_on) == 0:
        out.write("kamal-secure: nothing to do: this project passes the gate.\n")
        return EXIT_CLEAN
    out.write("To make this project pass the gate, in this order:\n")
    for number, step in enumerate(steps, start=1):
        out.write(f"  {number}. {step.command}\n     needs: {step.needs}\n")
    out.write(f"  {len(steps) + 1}. kamal-secure scan{extra}   (what is left, if anything)\n")
    if opts.offline:
        out.write("(--offline: the hosts were not checked, so every host step is listed)\n")
    return EXIT_CLEAN
