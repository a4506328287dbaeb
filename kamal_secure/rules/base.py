"""Rule metadata and the context rules read. Rules do no I/O and never print."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from kamal_secure.config import yamlsafe
from kamal_secure.config.erb import ErbTag
from kamal_secure.config.load import Project
from kamal_secure.report.model import Finding, Location, Severity, redact
from kamal_secure.secretscan import vendor_match

if TYPE_CHECKING:
    from kamal_secure.config.files import Hook
    from kamal_secure.facts.kamal_version import KamalVersion
    from kamal_secure.facts.keys import CaFacts, KeyFacts
    from kamal_secure.facts.shellcheck import ShellcheckNote
    from kamal_secure.rules.host_base import HostContext
    from kamal_secure.schemas import Violation


@dataclass(frozen=True)
class Context:
    """Everything a static rule may read: the loaded project and the policy settings."""

    project: Project
    settings: dict[str, Any] = field(default_factory=dict)
    keys: tuple[KeyFacts, ...] = ()  # facts about the files in ssh.keys
    agent_socket: bool = True  # SSH_AUTH_SOCK is set where Kamal will run
    ca: CaFacts | None = None  # certificate mode's CA (its key file), None: key mode

    @cached_property
    def kamal(self) -> KamalVersion:
        """The project's Kamal; looked up only when a rule's advice depends on it."""
        from kamal_secure.facts.kamal_version import detect

        return detect(self.project.root)

    def shellcheck(self, hook: Hook) -> tuple[ShellcheckNote, ...] | None:
        """ShellCheck's notes on a hook (None: not installed, or not a shell script); run once
        per script text, however many destinations or rules ask."""
        from kamal_secure.facts.shellcheck import shellcheck_notes

        return shellcheck_notes(hook.text)

    def at(self, *path: str | int) -> Location:
        origin = self.project.origin(tuple(path))
        return Location(origin.file, origin.line, origin.column, path=yaml_path(path))

    def erb_tags(self, path: yamlsafe.Path, text: str) -> list[ErbTag]:
        """The ERB output tags that wrote (part of) the value at ``path``."""
        origin = self.project.origin(path)
        last = origin.line + text.count("\n") + 1
        return [tag for source in self.project.sources if source.name == origin.file
                for tag in source.masked.tags
                if tag.kind == "output" and origin.line <= tag.line <= last]

    @cached_property
    def violations(self) -> list[Violation]:
        """The security schema's violations, computed once for all schema rules."""
        from kamal_secure.schemas import SECURITY, violations

        return list(violations(SECURITY, self.project.data))

    @cached_property
    def structure_violations(self) -> list[Violation]:
        """The Kamal 2 structure schema's violations (keys and types), computed once."""
        from kamal_secure.schemas import STRUCTURE, violations

        return list(violations(STRUCTURE, self.project.data))


def yaml_path(path: yamlsafe.Path) -> str:
    """``servers.web.options.cap-add[1]``; a key that looks like a secret is redacted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        shown = redact(part) if vendor_match(part) else part
        out += f".{shown}" if out else shown
    return out


Check = Callable[["Rule", Context], Iterable[Finding]]
HostCheck = Callable[["Rule", "HostContext"], Iterable[Finding]]

# What a rule reads, and so which check it has:
#   config  a check over the loaded config (Context)            -> check
#   schema  a constraint in deploy.security.schema.json          -> check (reads the violations)
#   keys    a check over the files in ssh.keys (Context.keys)    -> check
#   host    a check over one host's facts (HostContext)          -> host_check
#   raised  no check: raised by another part (fleet problems, the policy, drift watch)
Kind = Literal["config", "schema", "keys", "host", "raised"]
KINDS: tuple[Kind, ...] = ("config", "schema", "keys", "host", "raised")
PROJECT_KINDS = frozenset({"config", "schema"})  # what a deploy.yml example can show


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str
    rationale: str
    fix: str
    insecure: str
    secure: str
    family: str
    check: Check | None = None  # None: evaluated by the JSON schema or by another subsystem
    references: tuple[str, ...] = ()
    example_path: str = "config/deploy.yml"  # where the examples go: a config, secrets or hook
    also: tuple[tuple[Severity, str], ...] = ()  # other severities it emits, and when
    kind: Kind = field(kw_only=True)
    host_check: HostCheck | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        has = (self.check is not None, self.host_check is not None)
        wants = {"host": (False, True), "raised": (False, False)}.get(self.kind, (True, False))
        if self.kind not in KINDS or has != wants:
            raise ValueError(f"{self.id}: a {self.kind!r} rule has the wrong checks")

    @property
    def levels(self) -> tuple[Severity, ...]:
        """Every severity this rule emits: the one source for `rules`, docs and findings."""
        return (self.severity, *(level for level, _ in self.also))

    @property
    def levels_label(self) -> str:
        return "/".join(level.label for level in self.levels)

    def finding(
        self,
        message: str,
        location: Location,
        evidence: str | None = None,
        severity: Severity | None = None,
        fix: str | None = None,
    ) -> Finding:
        severity = self.severity if severity is None else severity
        if severity not in self.levels:
            raise ValueError(f"{self.id} emits {severity.label}, which it does not declare")
        return Finding(
            rule=self.id,
            severity=severity,
            title=self.title,
            message=message,
            location=location,
            evidence=evidence,
            fix=fix if fix is not None else self.fix,
        )


def schema_check(rule: Rule, ctx: Context) -> Iterator[Finding]:
    """The check of a rule that lives in kamal_secure/schema/deploy.security.schema.json."""
    for found in ctx.violations:
        if found.rule == rule.id:
            path = yaml_path(found.path)
            message = found.message if path in found.message else f"{path}: {found.message}"
            yield rule.finding(message, ctx.at(*found.path))


Fill = Callable[[Context, Any], "tuple[str | None, Severity | None]"]


def filled_schema_check(fill: Fill) -> Check:
    """A schema rule whose fix (and severity) come from the finding's own value."""

    def check(rule: Rule, ctx: Context) -> Iterator[Finding]:
        for found in ctx.violations:
            if found.rule == rule.id:
                path = yaml_path(found.path)
                message = found.message if path in found.message else f"{path}: {found.message}"
                fix, severity = fill(ctx, ctx.project.get(*found.path))
                yield rule.finding(message, ctx.at(*found.path), fix=fix, severity=severity)

    SCHEMA_CHECKS.add(check)
    return check


SCHEMA_CHECKS: set[Check] = {schema_check}


def run_checks(rules: Iterable[Rule], ctx: Context) -> Iterator[Finding]:
    """The checks of the config, schema and key rules (host and raised rules have none)."""
    for rule in rules:
        if rule.check is not None:
            yield from rule.check(rule, ctx)


def define(
    id: str,
    severity: Severity,
    title: str,
    *,
    rationale: str,
    fix: str,
    insecure: str,
    secure: str,
    family: str,
    references: tuple[str, ...] = (),
    example_path: str = "config/deploy.yml",
    also: tuple[tuple[Severity, str], ...] = (),
    kind: Kind = "config",
) -> Callable[[Check], Rule]:
    """Decorator: turn ``check(rule, ctx)`` into a Rule (one of registry.ALL_RULES).
    A check from schema_check/filled_schema_check makes a "schema" rule."""

    def wrap(check: Check) -> Rule:
        return Rule(id, severity, title, rationale, fix, insecure, secure, family, check,
                    references, example_path, also,
                    kind="schema" if check in SCHEMA_CHECKS else kind)

    return wrap
