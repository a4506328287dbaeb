"""The gate in front of a kamal command that touches servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.markup import escape

from kamal_secure.audit.hosts import OFFLINE_ENV
from kamal_secure.audit.static import evaluate
from kamal_secure.config.load import loaded_once
from kamal_secure.errors import EXIT_FINDINGS, UsageError
from kamal_secure.gate.kamal import Invocation, classify, exec_kamal
from kamal_secure.policy import baseline
from kamal_secure.policy.file import Policy, load_policy
from kamal_secure.report import text
from kamal_secure.report.model import Report, Severity
from kamal_secure.report.safe import scrub, shown

AUDIT_LOG = Path(".kamal/secure-audit.log")


def gate_settings(environ: dict[str, str]) -> tuple[Policy, Severity, frozenset[str],
                                                   str | None]:
    """What every gate path reads first: the policy, the threshold, the baseline and the
    break-glass reason (an empty one refused)."""
    skip = environ.get("KAMAL_SECURE_SKIP")
    if skip is not None and not skip.strip():
        raise UsageError("KAMAL_SECURE_SKIP is set but empty: a break-glass reason is required")
    policy = load_policy()
    fail_on = fail_on_from_env(environ, policy.fail_on)
    known = frozenset[str]()
    if environ.get("KAMAL_SECURE_BASELINE"):
        known = baseline.read(Path(environ["KAMAL_SECURE_BASELINE"]), "KAMAL_SECURE_BASELINE")
    return policy, fail_on, known, skip


def fail_on_from_env(env: dict[str, str], default: Severity = Severity.HIGH) -> Severity:
    raw = env.get("KAMAL_SECURE_FAIL_ON") or default.label
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


@dataclass
class Verdict:
    report: Report
    fail_on: Severity
    code: int
    skip: str | None  # the break-glass reason, when one was given
    hosts_checked: bool = True  # False: KAMAL_SECURE_OFFLINE=1 (or scan --offline) skipped them


def decide(config_file: str, destination: str | None, environ: dict[str, str],
           hosts: list[str], roles: list[str], live: bool = True,
           exact_hosts: tuple[str, list[str]] | None = None) -> Verdict:
    """Run every check with the policy applied; raises on usage or config errors.

    The live host checks run when ``live``, unless KAMAL_SECURE_OFFLINE=1 (said loudly).
    ``exact_hosts``: check exactly these hosts instead of filtering with -h/-r (hooks)."""
    policy, fail_on, known, skip = gate_settings(environ)
    offline = not live or environ.get(OFFLINE_ENV) == "1"
    if live and offline:
        text.make_console(sys.stderr).print(
            f"[bold white on red] OFFLINE [/] {OFFLINE_ENV}=1: the hosts' sshd settings and "
            "host keys were NOT checked")
    # Kamal runs ssh.proxy_command itself right after this: running it here adds nothing
    report = evaluate(config_file, destination, policy, baseline=known, live=not offline,
                      hosts=hosts, roles=roles, allow_proxy_command=True,
                      exact_hosts=exact_hosts)
    return Verdict(report, fail_on, report.exit_code(fail_on), skip.strip() if skip else None,
                   hosts_checked=not offline)


def proceed(verdict: Verdict, what: str, command: list[str], options: dict[str, str]) -> bool:
    """Print what the user must see; True when kamal may go on (clean, or break glass)."""
    console = text.make_console(sys.stderr)
    report = verdict.report
    if verdict.code == 0:
        if report.active():
            text.render(report, console, verdict.fail_on)
        return True
    text.render(report, console, verdict.fail_on)
    if verdict.code == EXIT_FINDINGS and verdict.skip:
        reason = scrub(verdict.skip)
        # record first: it can still refuse
        _append_audit(command, options, reason, report, verdict.hosts_checked)
        console.print(f"[bold white on red] BREAK GLASS [/] KAMAL_SECURE_SKIP: "
                      f"{escape(shown(what))} despite {len(report.active())} finding(s). "
                      f"Reason: {escape(shown(reason))}")
        return True
    return False


@loaded_once()  # reads only: each project is loaded once
def run_fallback(args: list[str], environ: dict[str, str], path: str) -> int:
    from kamal_secure.gate import fallback

    inv = Invocation(args)
    _require_text(inv)
    fallback.check_argv(args)
    kind = classify(inv)
    if kind == "alias":
        kind = _fallback_alias(inv)
    if kind != "gate":
        exec_kamal(args, environ, path)
    from kamal_secure.config.load import load_project

    fallback.check_config(load_project(inv.config_file, inv.destination))
    return run_gate(inv, environ, path)


def _fallback_alias(inv: Invocation) -> str:
    from kamal_secure.config.load import load_project
    from kamal_secure.gate import fallback
    from kamal_secure.gate.aliases import aliases_of, resolve_kind

    word = inv.command or ""
    aliases = aliases_of(load_project(inv.config_file, inv.destination))
    value = aliases.get(word)
    if not isinstance(value, str):
        raise fallback.refuse(f"`kamal {word}` (a command prefix or an unknown word)")
    fallback.check_alias(value)
    return resolve_kind(inv)


def run_gate(inv: Invocation, env: dict[str, str] | None = None, path: str | None = None) -> int:
    environ = dict(os.environ if env is None else env)
    _require_text(inv)
    minted = _mint(inv, environ)
    try:
        verdict = decide(inv.config_file, inv.destination, environ, inv.hosts, inv.roles)
        options = {k: v for k, v in inv.options.items() if k != "version"}
        if proceed(verdict, "running kamal", inv.words[:2], options):
            if verdict.code == 0 and environ.get(OFFLINE_ENV) != "1":
                _record_digest(inv, environ)
            minted = None  # Kamal's now
            exec_kamal(inv.args, environ, path)
    finally:
        if minted is not None:
            minted.unlink(missing_ok=True)  # refused: the certificate goes too
    sys.stderr.write(f"kamal-secure: refused to run `kamal {' '.join(inv.words[:2])}` "
                     "(see the findings above; `kamal-secure scan` repeats them)\n")
    return verdict.code


def _mint(inv: Invocation, environ: dict[str, str]) -> Path | None:
    """Certificate mode: the deploy key's certificate, before the live checks log in with
    it and before Kamal does (see gate/certificate.py)."""
    from kamal_secure.config.inventory import ssh_settings
    from kamal_secure.config.load import load_project
    from kamal_secure.gate.certificate import interactive_flag, mint_for, needs_pty

    ssh = ssh_settings(load_project(inv.config_file, inv.destination))
    return mint_for([ssh], inv.words[:2], needs_pty(inv.words, interactive_flag(inv.args)),
                    environ)


def _record_digest(inv: Invocation, environ: dict[str, str]) -> None:
    """Tell Kamal's hooks (our pre-connect/pre-deploy) which hosts were just checked."""
    from kamal_secure.config.inventory import build_inventory
    from kamal_secure.config.load import load_project
    from kamal_secure.gate.digest import DIGEST_ENV, HOSTS_ENV, gate_digest

    targets = build_inventory(load_project(inv.config_file, inv.destination), inv.hosts,
                              inv.roles).targets
    names = sorted({t.name for t in targets if not t.dynamic})
    environ[HOSTS_ENV] = ",".join(names)
    environ[DIGEST_ENV] = gate_digest(inv.config_file, inv.destination, names)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def account_name() -> str:
    """Who broke the glass: $USER/$LOGNAME, else the account name of this uid, else the uid."""
    named = os.environ.get("USER") or os.environ.get("LOGNAME")
    if named:
        return named
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _append_audit(command: list[str], options: dict[str, str], reason: str,
                  report: Report, hosts_checked: bool) -> None:
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": account_name(),
        "hosts_checked": hosts_checked,
        "git_commit": _git_commit(),
        "command": command,
        "options": options,
        "reason": reason,
        "findings": len(report.active()),
        "by_severity": report.counts(),
    }
    try:
        AUDIT_LOG.parent.mkdir(parents=True, exist_ok=True)
        with AUDIT_LOG.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
    except OSError as err:
        raise UsageError(f"cannot write the break-glass record to {AUDIT_LOG}: "
                         f"{err.strerror}; refusing to skip the gate unrecorded") from None
