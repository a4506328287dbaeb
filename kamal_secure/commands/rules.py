"""`kamal-secure rules`: every rule with id, severity and title."""

from __future__ import annotations

import json
import sys

from kamal_secure.commands import Parser
from kamal_secure.errors import EXIT_CLEAN
from kamal_secure.rules.registry import ALL_RULES


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure rules", description="List every rule.")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    opts = parser.parse_args(args)
    if opts.format == "json":
        rows = [{"id": r.id, "severity": r.severity.label,
                 "severities": [level.label for level in r.levels], "title": r.title,
                 "family": r.family} for r in ALL_RULES]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_CLEAN
    for rule in ALL_RULES:
        sys.stdout.write(f"{rule.id}  {rule.levels_label:13}  {rule.title}\n")
    return EXIT_CLEAN
