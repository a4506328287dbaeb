"""`kamal-secure hooks install|uninstall|status`: Kamal's own hooks run the gate."""

from __future__ import annotations

import sys
from pathlib import Path

from kamal_secure.commands import Parser
from kamal_secure.errors import EXIT_CLEAN, ConfigError
from kamal_secure.integrate import hook_installer as hooks


def hooks_dir(config_file: str, destination: str | None) -> Path:
    """The config's ``hooks_path``, else ``.kamal/hooks`` (as Kamal resolves it)."""
    from kamal_secure.config.load import load_project

    try:
        project = load_project(config_file, destination)
    except ConfigError:
        if Path(config_file).exists():
            raise
        return Path(".kamal/hooks")
    value = project.get("hooks_path")
    return Path(value) if isinstance(value, str) and value else Path(".kamal/hooks")


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure hooks",
                    description="Install kamal-secure as Kamal's pre-connect and pre-deploy hooks.")
    parser.add_argument("action", choices=("install", "uninstall", "status"))
    parser.add_argument("-c", "--config-file", default="config/deploy.yml")
    parser.add_argument("-d", "--destination", default=None)
    opts = parser.parse_args(args)
    directory = hooks_dir(opts.config_file, opts.destination)
    action = {"install": hooks.install, "uninstall": hooks.uninstall,
              "status": hooks.status}[opts.action]
    for line in action(directory):
        sys.stdout.write(f"{directory}/{line}\n")
    return EXIT_CLEAN
