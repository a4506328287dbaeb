"""`kamal-secure binstub install|uninstall|status`: Rails' bin/kamal goes through the gate."""

from __future__ import annotations

import sys
from pathlib import Path

from kamal_secure.commands import Parser
from kamal_secure.errors import EXIT_CLEAN
from kamal_secure.integrate import binstub


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure binstub",
                    description="Route the project's bin/kamal (a Bundler binstub) through "
                    "kamal-secure; the bundled Kamal stays the real one.")
    parser.add_argument("action", choices=("install", "uninstall", "status"))
    parser.add_argument("--path", type=Path, default=binstub.BINSTUB,
                        help="the binstub (default: bin/kamal)")
    opts = parser.parse_args(args)
    action = {"install": binstub.install, "uninstall": binstub.uninstall,
              "status": binstub.status}[opts.action]
    sys.stdout.write(action(opts.path) + "\n")
    return EXIT_CLEAN
