"""`kamal-secure explain RULE`: the rule's page, from the same metadata as `rules`."""

from __future__ import annotations

import sys

from kamal_secure.commands import Parser
from kamal_secure.errors import EXIT_CLEAN
from kamal_secure.rules import docs
from kamal_secure.rules.registry import get


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure explain", description="Explain one rule.")
    parser.add_argument("rule", help="a rule id such as KS103")
    parser.add_argument("--color", dest="color", action="store_true", default=None,
                        help="render the Markdown even when not on a terminal")
    parser.add_argument("--no-color", dest="color", action="store_false",
                        help="print the plain Markdown")
    opts = parser.parse_args(args)
    page = docs.page(get(opts.rule))
    from kamal_secure.report.text import make_console

    console = make_console(sys.stdout, opts.color)
    if not console.is_terminal:
        sys.stdout.write(page)  # piped: the Markdown itself, for files and other tools
        return EXIT_CLEAN
    from rich.markdown import Markdown

    console.print(Markdown(page))
    return EXIT_CLEAN
