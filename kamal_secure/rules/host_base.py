"""Host rules: the same Rule record as every rule, kind "host": ``Rule.host_check``
reads a :class:`HostContext` (one host's facts and the project's thresholds)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from kamal_secure.facts.host import HostFacts, SshdConfig
from kamal_secure.facts.keys import CaFacts
from kamal_secure.report.model import Finding, Location, Severity
from kamal_secure.rules.base import HostCheck, Rule

FAMILY = "host"


@dataclass(frozen=True)
class HostThresholds:
    """What the host rules take from the project's policy (``hosts:`` in .kamal/secure.yml),
    with the defaults; kamal_secure.policy.file reads the file into a subclass of this."""

    max_auth_tries: int = 4
    login_grace_time: int = 60
    client_alive_interval: int = 300
    client_alive_count_max: int = 3
    tcp_forwarding: tuple[str, ...] = ("no", "local")
    log_levels: tuple[str, ...] = ("VERBOSE", "INFO")
    # Baselines disagree on these; nothing is checked unless the project says so (KS723).
    banner: str = "any"  # "required" | "none" | "any"
    print_last_log: str = "any"  # "yes" | "no" | "any"
    port: int = 0  # the port sshd must listen on; 0: any
    # KS722 when the effective settings could not be established (unreadable file/Include)
    unknown_severity: str = "high"


@dataclass(frozen=True)
class HostContext:
    facts: HostFacts
    policy: HostThresholds
    where: Location  # the host, and the deploy.yml file:line that names it
    local_registry: str | None = None  # registry.server localhost:PORT: needs remote forwarding
    ca: CaFacts | None = None  # certificate mode: the project's CA; None: key mode

    @property
    def sshd(self) -> SshdConfig | None:
        return self.facts.sshd

    def offers(self, method: str) -> bool:
        return self.facts.offered is not None and method in self.facts.offered

    def evidence(self, key: str) -> str | None:
        if self.sshd is None:
            return None
        value = self.sshd.get(key)
        return f"{key} {value} ({self.sshd.source})" if value is not None else None



def host_rule(
    id: str,
    severity: Severity,
    title: str,
    *,
    rationale: str,
    fix: str,
    insecure: str,
    secure: str,
    references: tuple[str, ...] = (),
    also: tuple[tuple[Severity, str], ...] = (),
) -> Callable[[HostCheck], Rule]:
    def wrap(check: HostCheck) -> Rule:
        return Rule(id, severity, title, rationale, fix, insecure, secure, FAMILY, None,
                    references, also=also, kind="host", host_check=check)

    return wrap


def run_host_checks(rules: Iterable[Rule], ctx: HostContext) -> Iterator[Finding]:
    for rule in rules:
        if rule.host_check is not None:
            yield from rule.host_check(rule, ctx)


def setting_is(ctx: HostContext, key: str, *bad: str) -> bool:
    value = ctx.sshd.flag(key) if ctx.sshd is not None else None
    return value is not None and value in bad


def setting_not(ctx: HostContext, key: str, *good: str) -> bool:
    value = ctx.sshd.flag(key) if ctx.sshd is not None else None
    return value is not None and value not in good


SSHD_REFS = ("https://man.openbsd.org/sshd_config", "dev-sec ssh-baseline",
             "CIS Distribution Independent Linux, 5.2")
