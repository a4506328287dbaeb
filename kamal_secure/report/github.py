"""GitHub Actions workflow commands: findings show inline on the pull request."""

from __future__ import annotations

import re

from kamal_secure.report.model import Report, Severity
from kamal_secure.report.safe import shown

COMMAND = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
           Severity.LOW: "notice", Severity.INFO: "notice"}


def _data(text: str) -> str:
    """Redacted, controls other than CR/LF escaped, then the runner's own escaping."""
    text = "".join(part if part in ("\r", "\n") else shown(part)
                   for part in re.split("([\r\n])", text))
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def render(report: Report, config_file: str = "config/deploy.yml") -> str:
    lines = []
    for f in report.active():
        loc = f.location
        props = [f"file={_prop(loc.file or config_file)}", f"line={max(loc.line or 1, 1)}"]
        if loc.column:
            props.append(f"col={loc.column}")
        props.append(f"title={_prop(f'{f.rule} {f.title}')}")
        host = f" (host {loc.host})" if loc.host else ""
        fix = f" Fix: {f.fix}" if f.fix else ""
        lines.append(f"::{COMMAND[f.severity]} {','.join(props)}::"
                     f"{_data(f.severity.label.upper() + ': ' + f.message + host + fix)}")
    for p in report.problems:
        lines.append(f"::error title={_prop('kamal-secure: check incomplete')}::"
                     f"{_data(p.what + ': ' + p.message + (' host ' + p.host if p.host else ''))}")
    return "".join(line + "\n" for line in lines)
