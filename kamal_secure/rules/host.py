"""The host family (KS7xx, KS8xx): every host rule, in id order, and how to run them."""

from __future__ import annotations

from collections.abc import Iterator

from kamal_secure.facts.host import HostFacts
from kamal_secure.facts.keys import CaFacts
from kamal_secure.report.model import Finding, Location
from kamal_secure.rules import host_access, host_auth, host_certs, host_hardening
from kamal_secure.rules.base import Rule
from kamal_secure.rules.host_base import HostContext, HostThresholds, run_host_checks

RULES: tuple[Rule, ...] = tuple(sorted(
    (*host_auth.RULES, *host_hardening.RULES, *host_access.RULES, *host_certs.RULES),
    key=lambda r: r.id))


def check_host(facts: HostFacts, policy: HostThresholds, where: Location,
               local_registry: str | None = None, ca: CaFacts | None = None,
               ) -> Iterator[Finding]:
    """``ca``: the project's CA in certificate mode (None: key mode)."""
    yield from run_host_checks(RULES, HostContext(facts, policy, where, local_registry, ca))
