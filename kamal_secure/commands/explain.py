"""`kamal-secure explain RULE`: the rule's page, from the same metadata as `rules`."""

from __future__ import annotations

import sys

from kamal_secure.commands import Parser
from kamal_secure.rules import docs
from kamal_secure.rules.registry import get


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure explain", description="Explain one rule.")
    parser.add_argument("rule", help="a rule id such as KS103")
    opts = parser.parse_args(args)
    sys.stdout.write(docs.page(get(opts.rule)))
    return 0
