"""`kamal-secure scan`: the gate's checks without deploying."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kamal_secure.audit import run_static
from kamal_secure.commands import Parser
from kamal_secure.errors import UsageError
from kamal_secure.gate import fail_on_from_env
from kamal_secure.report import jsonfmt, text
from kamal_secure.report.model import Severity


def _parser() -> Parser:
    parser = Parser(prog="kamal-secure scan", add_help=False,
                    description="Audit the Kamal project in this directory without deploying.")
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-c", "--config-file", default="config/deploy.yml")
    parser.add_argument("-d", "--destination", default=None)
    parser.add_argument("-h", "--hosts", default=None, help="only these hosts (comma-separated)")
    parser.add_argument("-r", "--roles", default=None, help="only these roles (comma-separated)")
    parser.add_argument("--offline", action="store_true",
                        help="static checks only: never connect to a host")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--output", type=Path, default=None, help="write the report here")
    parser.add_argument("--fail-on", default=None,
                        help="severity at which to exit 1 (default: high)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="text: only findings at or above the threshold")
    parser.add_argument("--color", dest="color", action="store_true", default=None)
    parser.add_argument("--no-color", dest="color", action="store_false")
    return parser


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    if opts.fail_on is None:
        fail_on = fail_on_from_env(dict(os.environ))
    else:
        try:
            fail_on = Severity.parse(opts.fail_on)
        except ValueError as err:
            raise UsageError(f"--fail-on: {err}") from None
    report = run_static(opts.config_file, opts.destination)
    if not opts.offline:
        from kamal_secure.hosts import audit_hosts, merge

        merge(report, audit_hosts(opts.config_file, opts.destination, _split(opts.hosts),
                                  _split(opts.roles)))
    code = report.exit_code(fail_on)
    if opts.format == "json":
        _write(jsonfmt.render(report, fail_on, code), opts.output)
    elif opts.output is not None:
        with opts.output.open("w", encoding="utf-8") as handle:
            text.render(report, text.make_console(handle, color=False), fail_on, opts.quiet)
    else:
        text.render(report, text.make_console(sys.stdout, opts.color), fail_on, opts.quiet)
    return code


def _split(value: str | None) -> list[str]:
    return [item for item in (value or "").split(",") if item]


def _write(content: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(content)
        return
    try:
        output.write_text(content, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"--output {output}: {err.strerror}") from None
