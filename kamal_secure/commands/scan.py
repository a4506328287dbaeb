"""`kamal-secure scan`: the gate's checks without deploying, in any output format."""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from kamal_secure.audit.static import evaluate
from kamal_secure.commands import Parser
from kamal_secure.config.load import loaded_once
from kamal_secure.errors import EXIT_CLEAN, EXIT_FINDINGS, UsageError
from kamal_secure.fileio import write_atomic
from kamal_secure.gate.certificate import certify_in_memory
from kamal_secure.gate.run import fail_on_from_env
from kamal_secure.policy import baseline as baseline_file
from kamal_secure.policy.file import Policy, load_policy
from kamal_secure.report import github, jsonfmt, sarif, text
from kamal_secure.report.model import Report, Severity

FORMATS = ("text", "json", "sarif", "github")


def _parser() -> Parser:
    p = Parser(prog="kamal-secure scan", add_help=False,
               description="Audit the Kamal project in this directory without deploying. "
               "Connects to every host Kamal would (sshd settings, host keys, authorized_keys) "
               "unless --offline.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-c", "--config-file", default="config/deploy.yml")
    p.add_argument("-d", "--destination", default=None)
    p.add_argument("-h", "--hosts", default=None, help="only these hosts (comma-separated)")
    p.add_argument("-r", "--roles", default=None, help="only these roles (comma-separated)")
    p.add_argument("--offline", action="store_true",
                   help="static checks only: never connect to a host or start a process "
                   "(default: connect to every host)")
    p.add_argument("--allow-proxy-command", action="store_true",
                   help="run ssh.proxy_command from deploy.yml to reach the hosts (a local "
                   "command from the scanned repository; off by default)")
    p.add_argument("--drift", action="store_true",
                   help="compare the hosts with the approved .kamal/secure-state.json "
                   "(required; without --drift it is compared whenever it exists)")
    p.add_argument("--format", action="append", choices=FORMATS, default=None,
                   help="text, json, sarif or github; repeat for several (default: text)")
    p.add_argument("--output", action="append", type=Path, default=None,
                   help="file for the matching --format (in order); text still goes to the "
                   "terminal when every format has a file")
    p.add_argument("--policy", type=Path, default=None,
                   help="policy file (default: .kamal/secure.yml when present)")
    p.add_argument("--fail-on", default=None, help="severity at which to exit 1 (default: high)")
    p.add_argument("--soft-fail", action="store_true", help="report findings but exit 0")
    p.add_argument("--show-suppressed", action="store_true", help="also show waived findings")
    p.add_argument("--no-inline-waivers", action="store_true",
                   help="ignore `# kamal-secure: ignore` comments in deploy.yml")
    p.add_argument("--baseline", type=Path, default=None,
                   help="only findings not in this baseline file fail")
    p.add_argument("--write-baseline", type=Path, default=None,
                   help="record the current findings as the baseline and exit 0")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="text: only findings at or above the threshold")
    p.add_argument("--color", dest="color", action="store_true", default=None)
    p.add_argument("--no-color", dest="color", action="store_false")
    return p


def _fail_on(opts: argparse.Namespace, policy: Policy) -> Severity:
    if opts.fail_on is not None:
        try:
            return Severity.parse(opts.fail_on)
        except ValueError as err:
            raise UsageError(f"--fail-on: {err}") from None
    if os.environ.get("KAMAL_SECURE_FAIL_ON"):
        return fail_on_from_env(dict(os.environ))
    return policy.fail_on


def _targets(opts: argparse.Namespace) -> list[tuple[str, Path | None]]:
    formats: list[str] = opts.format or ["text"]
    outputs: list[Path] = opts.output or []
    if len(outputs) > len(formats):
        raise UsageError("more --output files than --format values")
    pairs: list[tuple[str, Path | None]] = [
        (fmt, outputs[i] if i < len(outputs) else None) for i, fmt in enumerate(formats)]
    if sum(1 for _, out in pairs if out is None) > 1:
        raise UsageError("only one --format can go to the terminal; give the others --output")
    if all(out is not None for _, out in pairs) and "text" not in formats:
        pairs.append(("text", None))
    return pairs


@loaded_once()  # reads only: each project is loaded once
def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    targets = _targets(opts)
    policy = load_policy(opts.policy)
    fail_on = _fail_on(opts, policy)
    known = baseline_file.read(opts.baseline) if opts.baseline else frozenset()
    if opts.drift and opts.offline:
        raise UsageError("--drift reads the hosts: it cannot be combined with --offline")
    # certificate mode: the live checks log in first with a certificate held in memory
    certify = None if opts.offline else certify_in_memory("scan", policy.certificates,
                                                          os.environ)
    report = evaluate(opts.config_file, opts.destination, policy,
                      inline=False if opts.no_inline_waivers else None, baseline=known,
                      live=not opts.offline, hosts=_split(opts.hosts), roles=_split(opts.roles),
                      every_destination=True,
                      allow_proxy_command=opts.allow_proxy_command,
                      drift=True if opts.drift else None,
                      certify=certify)
    if opts.write_baseline:
        count = baseline_file.write(opts.write_baseline, report)
        sys.stdout.write(f"kamal-secure: wrote {count} finding(s) to {opts.write_baseline}\n")
        return EXIT_CLEAN
    code = report.exit_code(fail_on)
    for fmt, output in targets:
        _emit(fmt, output, report, opts, fail_on, code)
    return EXIT_CLEAN if opts.soft_fail and code == EXIT_FINDINGS else code


def _emit(fmt: str, output: Path | None, report: Report, opts: argparse.Namespace,
          fail_on: Severity, code: int) -> None:
    if fmt == "text":
        if output is None:
            console = text.make_console(sys.stdout, opts.color)
            text.render(report, console, fail_on, opts.quiet, opts.show_suppressed)
            return
        buffer = io.StringIO()
        text.render(report, text.make_console(buffer, color=False), fail_on, opts.quiet,
                    opts.show_suppressed)
        _write(output, buffer.getvalue())
        return
    if fmt == "json":
        content = jsonfmt.render(report, fail_on, code)
    elif fmt == "sarif":
        content = sarif.render(report, Path.cwd().as_uri() + "/", opts.config_file)
    else:
        content = github.render(report, opts.config_file)
    if output is None:
        sys.stdout.write(content)
        return
    _write(output, content)


def _split(value: str | None) -> list[str]:
    return [item for item in (value or "").split(",") if item]


def _write(path: Path, content: str) -> None:
    """A report file, whole or not at all."""
    try:
        write_atomic(path, content)
    except OSError as err:
        raise UsageError(f"--output {path}: {err.strerror}") from None
