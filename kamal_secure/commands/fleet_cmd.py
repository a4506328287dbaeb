"""What the commands that act on every host share: target options, asking, per-host results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from kamal_secure.config.inventory import Inventory, Target, build_inventory
from kamal_secure.config.load import Project, load_project
from kamal_secure.errors import EXIT_CLEAN, EXIT_INCOMPLETE

HostResult = tuple[bool, str]
# Hosts changed at once by authorize and harden, and read at once by pin-hosts. Parallel is
# safe there: each host's change is proven on that host alone (and, for harden, guarded by
# that host's own rollback timer). rotate-key is serial instead (see its _Steps._each).
CONCURRENCY = 8


def add_target_options(p: argparse.ArgumentParser, dry_run_help: str) -> None:
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-c", "--config-file", default="config/deploy.yml")
    p.add_argument("-d", "--destination", default=None)
    p.add_argument("-h", "--hosts", default="", help="only these hosts (comma-separated)")
    p.add_argument("-r", "--roles", default="", help="only these roles (comma-separated)")
    p.add_argument("--dry-run", action="store_true", help=dry_run_help)
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.add_argument("--timeout", type=float, default=20.0)


def targets(opts: argparse.Namespace) -> tuple[Project, Inventory]:
    project = load_project(opts.config_file, opts.destination)
    return project, build_inventory(project, [h for h in opts.hosts.split(",") if h],
                                    [r for r in opts.roles.split(",") if r])


def confirmed(yes: bool, question: str) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        sys.stderr.write("kamal-secure: pass --yes to change hosts without a terminal to ask on\n")
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def on_every_host(inventory: Inventory, work: Callable[[Target], HostResult]) -> int:
    """Run ``work`` on every host (CONCURRENCY at a time), print one line per host, exit 0
    or 3. ``work`` turns every failure of its host into (False, why) itself; anything it
    raises anyway is raised here once all hosts are done."""
    from kamal_secure.remote.each_host import for_each_host

    outcomes = for_each_host(inventory.targets, work, CONCURRENCY, name=_label)
    results = [outcome.result() for outcome in outcomes]
    for target, (ok, message) in zip(inventory.targets, results, strict=True):
        sys.stdout.write(f"{'ok    ' if ok else 'FAILED'} {target.label}: {message}\n")
    return EXIT_CLEAN if all(ok for ok, _ in results) else EXIT_INCOMPLETE


def _label(target: Target) -> str:
    return target.label
