"""Human output with rich: colour only on a terminal (or FORCE_COLOR), never with NO_COLOR."""

from __future__ import annotations

import os
from typing import TextIO

from rich.console import Console
from rich.markup import escape

from kamal_secure.report.model import Report, Severity
from kamal_secure.report.safe import raw, shown

STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def make_console(stream: TextIO, color: bool | None = None) -> Console:
    if color is None:
        if os.environ.get("NO_COLOR"):
            color = False
        elif os.environ.get("FORCE_COLOR"):
            color = True
        else:
            color = stream.isatty()
    return Console(file=raw(stream), no_color=not color, force_terminal=color,
                   highlight=False, soft_wrap=True, emoji=False,
                   color_system="standard" if color else None)


def _v(value: str, newlines: bool = False) -> str:
    """A value for rich: redacted, control characters escaped, markup escaped."""
    return escape(shown(value, newlines))


def render(report: Report, console: Console, fail_on: Severity, quiet: bool = False,
           show_suppressed: bool = False) -> None:
    for f in report.sorted_findings():
        if (quiet and f.severity < fail_on) or (f.suppression and not show_suppressed):
            continue
        sev = f"[{STYLE[f.severity]}]{f.severity.label.upper():8}[/]"
        tag = " [dim](in baseline)[/]" if f.in_baseline else ""
        path = f"  path: {f.location.path}" if f.location.path else ""
        console.print(f"{sev} {f.rule}  {_v(str(f.location))}{_v(path)}{tag}")
        message = f.message.removeprefix(f"{f.location.path}: ") if f.location.path else f.message
        console.print(f"         {_v(message)}")
        if f.suppression:
            console.print(f"         [dim]waived ({_v(f.suppression.kind)}, "
                          f"{_v(f.suppression.where)}): "
                          f"{_v(f.suppression.justification)}[/]")
        if f.evidence:
            console.print(f"         evidence: {_v(f.evidence)}")
        if f.fix:
            console.print(f"         fix: {_v(f.fix, newlines=True)}  "
                          f"(kamal-secure explain {f.rule})")
    for p in report.problems:
        where = f" host {p.host}" if p.host else ""
        console.print(f"[bold red]INCOMPLETE[/]{_v(where)}: {_v(p.what)}: {_v(p.message)}")
    counts = ", ".join(f"{n} {label}" for label, n in report.counts().items() if n)
    waived = sum(1 for f in report.findings if f.suppression)
    based = sum(1 for f in report.findings if f.in_baseline)
    extra = (f"; {waived} waived" if waived else "") + (f"; {based} in baseline" if based else "")
    console.print(f"{len(report.active())} finding(s){': ' + counts if counts else ''}{extra}; "
                  f"failing at {fail_on.label} and above.")
