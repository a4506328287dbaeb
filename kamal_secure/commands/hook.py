"""`kamal-secure hook NAME`: what our hook templates run inside a Kamal hook.

Kamal gives pre-connect and pre-deploy every secret in the environment: this
reads only the KAMAL_* variables it needs and never prints the environment.
"""

from __future__ import annotations

import os
import sys

from kamal_secure.commands import Parser
from kamal_secure.digest import already_checked
from kamal_secure.gate import decide, proceed
from kamal_secure.ops.hooks import HOOKS


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure hook", description="Run the gate inside a Kamal hook.")
    parser.add_argument("name", choices=HOOKS)
    opts = parser.parse_args(args)
    environ = dict(os.environ)
    config_file = environ.get("KAMAL_SECURE_CONFIG") or "config/deploy.yml"
    destination = environ.get("KAMAL_DESTINATION") or None
    hosts = [h for h in environ.get("KAMAL_HOSTS", "").split(",") if h]
    roles = [r for r in environ.get("KAMAL_ROLES", "").split(",") if r]
    live = not already_checked(environ, config_file, destination, hosts)
    if not live:
        sys.stderr.write(f"kamal-secure hook {opts.name}: hosts already checked by the "
                         "kamal-secure wrapper for this config; static checks only\n")
    verdict = decide(config_file, destination, environ, hosts, roles, live=live)
    command = [w for w in (environ.get("KAMAL_COMMAND"), environ.get("KAMAL_SUBCOMMAND")) if w]
    options = {"hook": opts.name, "destination": destination or "",
               "hosts": environ.get("KAMAL_HOSTS", "")}
    if proceed(verdict, f"letting Kamal continue past {opts.name}", command, options):
        return 0
    dest = f" -d {destination}" if destination else ""
    sys.stderr.write(f"kamal-secure hook {opts.name}: refused (exit {verdict.code}); "
                     f"full report: kamal-secure scan{dest}\n")
    return verdict.code
