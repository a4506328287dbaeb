"""`kamal-secure ca rotate`: a new SSH CA trusted on every host, then the old one removed.

Steps: generate the new CA key; add its line to every host's TrustedUserCAKeys file beside
the old one (logged in with a certificate of the old CA; then a new login with a
certificate of the new CA alone is proven, or the file is put back); prove the new CA's
certificate on every host again; switch what certificate mode names (``certificates.ca``
in .kamal/secure.yml, or the user's environment: said, never done); remove the old line
from every host (logged in with a new-CA certificate, proven again after); retire the old
CA private key. ``--abort`` goes back: the old line on every host first (proven with an
old-CA certificate), the policy as it was, then the new line off the hosts, then the new
key moved aside. The journal (``.kamal/secure-ca-rotation.json``) is written atomically
and durably after every step and every host change. sshd reads the TrustedUserCAKeys file
at every authentication: no reload, so no dead man's switch is needed.

The rules held at every step, per host: a CA line is only removed over a session that
logged in with a certificate of the CA that stays, and that CA's certificate is proven to
log in again right after (or the line comes back); the policy never names a CA whose
certificate has not just been proven on every host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from kamal_secure.remediate.journal import StepJournal

JOURNAL = Path(".kamal/secure-ca-rotation.json")
STEPS = ("started", "generated", "added", "verified", "switched", "removed", "retired")
# where certificate mode found the old CA: the policy's certificates.ca, nothing named (the
# default ~/.ssh/kamal_ca), KAMAL_SECURE_CA_ENV's variable, or the ssh-agent
SOURCES = ("policy", "default", "env", "agent")


@dataclass
class CaJournal(StepJournal):
    PATH: ClassVar[Path] = JOURNAL
    STEPS: ClassVar[tuple[str, ...]] = STEPS
    FIELDS: ClassVar[dict[str, str]] = {
        "old_ca": "a string", "old_line": "a string", "new_ca": "a string",
        "source": "a string", "env_name": "a string or null", "step": "a string",
        "hosts": "a mapping of host to step", "retired_as": "a string or null",
        "aborting": "true or false", "policy_before": "a string or null"}
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"env_name", "step", "hosts", "retired_as", "aborting", "policy_before"})
    WHAT: ClassVar[str] = "a CA rotation journal"

    old_ca: str  # the old CA private key's path (for the agent and env: where it would be)
    old_line: str  # the old CA's public key, "TYPE BASE64", as the hosts hold it
    new_ca: str  # the new CA private key's path
    source: str  # one of SOURCES
    env_name: str | None = None  # the variable named by KAMAL_SECURE_CA_ENV (never its value)
    step: str = "started"
    hosts: dict[str, str] = field(default_factory=dict)  # host -> last change done there
    retired_as: str | None = None
    aborting: bool = False  # an --abort (or an automatic rollback) has started
    policy_before: str | None = None  # .kamal/secure.yml before the switch, byte for byte


def ca_line(text: str) -> str:
    """A public key line as the hosts hold it: type and base64, no comment."""
    return " ".join(text.split()[:2])


def with_line(current: str, line: str) -> str:
    """The TrustedUserCAKeys file ``current`` with ``line`` added (once, at the end)."""
    kept = [ln for ln in current.splitlines() if ln.strip()]
    if any(ca_line(ln) == line for ln in kept):
        return current
    return "".join(ln + "\n" for ln in [*kept, line])


def without_line(current: str, line: str) -> str:
    """The TrustedUserCAKeys file ``current`` without ``line`` (comments and others kept)."""
    kept = [ln for ln in current.splitlines() if ln.strip() and ca_line(ln) != line]
    if len(kept) == len([ln for ln in current.splitlines() if ln.strip()]):
        return current
    return "".join(ln + "\n" for ln in kept)


def holds(current: str | None, line: str) -> bool:
    return current is not None and any(ca_line(ln) == line for ln in current.splitlines())
