"""The gate in front of a kamal command that touches servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from kamal_secure.audit import run_static
from kamal_secure.errors import EXIT_FINDINGS, UsageError
from kamal_secure.kamal import Invocation, exec_kamal
from kamal_secure.report import text
from kamal_secure.report.model import Report, Severity

AUDIT_LOG = Path(".kamal/secure-audit.log")


def fail_on_from_env(env: dict[str, str]) -> Severity:
    raw = env.get("KAMAL_SECURE_FAIL_ON", "high")
    try:
        return Severity.parse(raw)
    except ValueError as err:
        raise UsageError(f"KAMAL_SECURE_FAIL_ON: {err}") from None


def _require_text(inv: Invocation) -> None:
    for key in ("config_file", "destination", "hosts", "roles"):
        value = inv.options.get(key, "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"the {key.replace('_', '-')} argument is not valid UTF-8") from None


def run_gate(inv: Invocation, env: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if env is None else env)
    _require_text(inv)
    fail_on = fail_on_from_env(environ)
    skip = environ.get("KAMAL_SECURE_SKIP")
    if skip is not None and not skip.strip():
        raise UsageError("KAMAL_SECURE_SKIP is set but empty: a break-glass reason is required")
    report = run_static(inv.config_file, inv.destination)
    console = text.make_console(sys.stderr)
    _host_checks(inv, environ, report, console)
    verdict = report.exit_code(fail_on)
    if verdict == 0:
        if report.findings:
            text.render(report, console, fail_on)
        exec_kamal(inv.args, environ)
    text.render(report, console, fail_on)
    if verdict == EXIT_FINDINGS and skip:
        console.print(f"[bold white on red] BREAK GLASS [/] KAMAL_SECURE_SKIP: running kamal "
                      f"despite {len(report.findings)} finding(s). Reason: {skip.strip()}")
        _append_audit(inv, skip.strip(), report)
        exec_kamal(inv.args, environ)
    console.print(f"kamal-secure: refused to run `kamal {' '.join(inv.words[:2])}` "
                  "(see the findings above; `kamal-secure scan` repeats them)")
    return verdict


def _host_checks(inv: Invocation, environ: dict[str, str], report: Report,
                 console: Console) -> None:
    """Live checks of every host this command reaches, unless KAMAL_SECURE_OFFLINE=1."""
    from kamal_secure.hosts import OFFLINE_ENV, audit_hosts, merge

    if environ.get(OFFLINE_ENV) == "1":
        console.print(f"[bold white on red] OFFLINE [/] {OFFLINE_ENV}=1: the hosts' sshd "
                      "settings and host keys were NOT checked before this command")
        return
    merge(report, audit_hosts(inv.config_file, inv.destination, inv.hosts, inv.roles))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _append_audit(inv: Invocation, reason: str, report: Report) -> None:
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid()),
        "git_commit": _git_commit(),
        "command": inv.words[:2],
        "options": {k: v for k, v in inv.options.items() if k != "version"},
        "reason": reason,
        "findings": len(report.findings),
        "by_severity": report.counts(),
    }
    try:
        AUDIT_LOG.parent.mkdir(parents=True, exist_ok=True)
        with AUDIT_LOG.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
    except OSError as err:
        raise UsageError(f"cannot write the break-glass record to {AUDIT_LOG}: "
                         f"{err.strerror}; refusing to skip the gate unrecorded") from None
