"""`kamal-secure hook NAME`: what our hook templates run inside a Kamal hook.

Kamal gives pre-connect and pre-deploy every secret in the environment: this
reads only the KAMAL_* variables it needs and never prints the environment.

What is checked is what the running Kamal uses, never a guess from defaults:
the destination is Kamal's own KAMAL_DESTINATION, the config file comes from the
command line of the Kamal process that runs the hook (``-c``; see
kamal_secure/gate/parent.py), checked against KAMAL_SERVICE, and every host in
KAMAL_HOSTS is checked, also one the config does not name. A hook that cannot
establish these refuses (exit 2).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kamal_secure.commands import Parser
from kamal_secure.config.load import loaded_once
from kamal_secure.errors import EXIT_CLEAN, UsageError
from kamal_secure.gate.digest import already_checked
from kamal_secure.gate.run import decide, proceed
from kamal_secure.integrate.hook_installer import HOOKS


def running_config(environ: dict[str, str]) -> tuple[str, str | None]:
    """(config file, destination) of the Kamal that runs this hook, or UsageError."""
    from kamal_secure.config.erb import is_dynamic
    from kamal_secure.config.load import load_project
    from kamal_secure.gate.kamal import Invocation
    from kamal_secure.gate.parent import running_kamal

    kamal = running_kamal()
    inv = Invocation(kamal.args)
    shown = " ".join(kamal.words)[:200]
    if "KAMAL_DESTINATION" in environ and not environ["KAMAL_DESTINATION"]:
        raise UsageError("Kamal runs with an empty destination (-d \"\"): it reads a "
                         "deploy..yml file that kamal-secure will not guess at; refusing")
    destination = environ.get("KAMAL_DESTINATION") or None
    if inv.destination != destination:
        raise UsageError(f"cannot establish Kamal's destination: its command line ({shown}) "
                         f"reads as {inv.destination!r}, Kamal says {destination!r}; refusing")
    config_file = inv.config_file
    project = load_project(config_file, destination)
    service = project.get("service")
    expected = environ.get("KAMAL_SERVICE")
    if expected is not None and not is_dynamic(service) and str(service) != expected:
        raise UsageError(f"cannot establish Kamal's config file: {config_file} (read from "
                         f"{shown}) names service {service!r}, Kamal runs {expected!r}; "
                         "refusing")
    return config_file, destination


def _mint(config_file: str, destination: str | None, command: list[str],
          environ: dict[str, str]) -> Path | None:
    """Certificate mode under plain ``kamal`` (see gate/certificate.py)."""
    from kamal_secure.config.inventory import ssh_settings
    from kamal_secure.config.load import load_project
    from kamal_secure.gate.certificate import interactive_flag, mint_for, needs_pty
    from kamal_secure.gate.parent import running_kamal

    args = running_kamal().args
    return mint_for([ssh_settings(load_project(config_file, destination))], command,
             needs_pty(command, interactive_flag(args)), environ)


@loaded_once()  # reads only: each project is loaded once
def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure hook", description="Run the gate inside a Kamal hook.")
    parser.add_argument("name", choices=HOOKS)
    opts = parser.parse_args(args)
    environ = dict(os.environ)
    try:
        config_file, destination = running_config(environ)
    except UsageError as err:
        err.message = f"hook {opts.name}: {err.message}"
        raise
    hosts = [h for h in environ.get("KAMAL_HOSTS", "").split(",") if h]
    live = not already_checked(environ, config_file, destination, hosts)
    if not live:
        sys.stderr.write(f"kamal-secure hook {opts.name}: hosts already checked by the "
                         "kamal-secure wrapper for this config; static checks only\n")
    # KAMAL_HOSTS is Kamal's final list (after -h/-r): check exactly those hosts
    exact = ("KAMAL_HOSTS", hosts) if hosts else None
    command = [w for w in (environ.get("KAMAL_COMMAND"), environ.get("KAMAL_SUBCOMMAND")) if w]
    minted = None
    if live and opts.name == "pre-connect":  # plain kamal: net-ssh loads the key after us
        minted = _mint(config_file, destination, command, environ)
    verdict = decide(config_file, destination, environ, [], [], live=live, exact_hosts=exact)
    options = {"hook": opts.name, "destination": destination or "",
               "hosts": environ.get("KAMAL_HOSTS", ""), "config_file": config_file}
    if proceed(verdict, f"letting Kamal continue past {opts.name}", command, options):
        return EXIT_CLEAN
    if minted is not None:
        minted.unlink(missing_ok=True)  # refused: the certificate goes too
    dest = f" -d {destination}" if destination else ""
    conf = f" -c {config_file}" if config_file != "config/deploy.yml" else ""
    sys.stderr.write(f"kamal-secure hook {opts.name}: refused (exit {verdict.code}); "
                     f"full report: kamal-secure scan{conf}{dest}\n")
    return verdict.code
