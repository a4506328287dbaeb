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

Here: the journal, the TrustedUserCAKeys file's lines, the file's edit on one host
(:class:`HostFile`) and the policy's switch (:class:`PolicySwitch`); the steps that walk
the hosts are in :mod:`kamal_secure.remediate.ca_rotate_steps`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from kamal_secure.remediate import harden as ops
from kamal_secure.remediate.journal import Failed, StepJournal, kill_point

if TYPE_CHECKING:
    from kamal_secure.config.inventory import Target
    from kamal_secure.remote.session import Session

JOURNAL = Path(".kamal/secure-ca-rotation.json")
POLICY = Path(".kamal/secure.yml")
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


class HostFile:
    """The host's TrustedUserCAKeys file, root's, read and replaced compare-and-swap."""

    def __init__(self, sess: Session, target: Target) -> None:
        self.sess, self.target = sess, target
        self.prefix: list[str] = []
        if sess.endpoint.user != "root":
            if sess.run(["sudo", "-n", "true"])[0] != 0:
                raise Failed(f"{target.label}: needs root or passwordless sudo (sudo -n) for "
                             "the deploy user")
            self.prefix = ["sudo", "-n"]

    def read(self) -> str | None:
        _, out = self.sess.run([*self.prefix, "sh", "-c", ops.READ, "sh", ops.CA_FILE])
        return out.split("\n", 1)[1] if out.startswith("present") else None

    def put(self, text: str, before: str) -> tuple[int, str]:
        from kamal_secure.remote import actions

        return actions.put(self.sess, ops.CA_FILE, text.encode(), "644", before.encode(), "",
                           self.prefix)

    def change(self, change: str, line: str, keep: str,
               proof: Callable[[], tuple[bool, str]]) -> None:
        label = self.target.label
        current = self.read()
        if current is None:
            raise Failed(f"{label}: {ops.CA_FILE} does not exist: the host trusts no CA "
                         "(kamal-secure harden --trust-ca first)")
        after = with_line(current, line) if change == "add" else without_line(current, line)
        if after == current:
            return
        if not holds(after, keep):  # never remove the CA whose certificate we log in with
            raise Failed(f"{label}: {ops.CA_FILE} would not trust the CA that stays")
        code, out = self.put(after, current)
        if code != 0:
            raise Failed(f"{label}: {ops.CA_FILE} not changed: {out.strip()[:200]}")
        kill_point()
        ok, why = proof()
        if ok:
            return
        back, out = self.put(current, after)
        raise Failed(f"{label}: with the CA {'added' if change == 'add' else 'removed'}, a "
                     f"certificate alone did not log in ({why}): "
                     + ("the file is back as it was" if back == 0 else
                        f"putting it back failed ({out.strip()[:200]}): check the host"))


class PolicySwitch:
    """What certificate mode names: ``certificates.ca`` in .kamal/secure.yml is rewritten
    (the rest of the file kept); a CA from the environment or the agent is said, never
    touched, and never printed."""

    def __init__(self, root: Path, journal: CaJournal,
                 policy_ca: Callable[[], Path | None]) -> None:
        self.root, self.j, self.path = root, journal, root / POLICY
        self.policy_ca = policy_ca  # the policy's certificates.ca, read anew at every call

    def _names(self, path: str) -> bool:
        ca = self.policy_ca()
        return ca is not None and ca.expanduser() == Path(path)

    def _write(self, text: str) -> None:
        from kamal_secure.fileio import write_atomic

        write_atomic(self.path, text)
        kill_point()

    def _set(self, text: str, path: str) -> str:
        from kamal_secure.config.edit import set_section

        home = str(Path.home()) + "/"
        written = "~/" + path[len(home):] if path.startswith(home) else path
        return set_section(text, "certificates", {"ca": written}, str(POLICY)).after

    def switch(self) -> str:
        """Make the policy name the new CA; returns what the user must change by hand."""
        from kamal_secure.config.load import read_text

        if self._names(self.j.old_ca):
            text = read_text(self.path, str(POLICY))
            if self.j.policy_before is None:
                self.j.policy_before = text
                self.j.save(self.root)
            self._write(self._set(text, self.j.new_ca))
        new = self.j.new_ca
        if self.j.source == "env":
            return (f"the CA comes from ${self.j.env_name}: put the new CA's private key "
                    f"{new} there instead (for GitHub: gh secret set {self.j.env_name} < "
                    f"{new})")
        if self.j.source == "agent":
            return (f"the CA is in the ssh-agent: ssh-add {new} (and ssh-add -d the old "
                    f"CA), and keep certificates.ca naming {new}")
        if self.j.source == "default":
            return (f"nothing names the CA: name the new one, certificates.ca: {new} in "
                    f"{POLICY} (or KAMAL_SECURE_CA_ENV / KAMAL_SECURE_CA_AGENT)")
        return ""

    def switch_back(self) -> None:
        """The policy as it was before the switch, byte for byte, when nobody edited it
        since; else only its certificates.ca pointed back at the old CA."""
        from kamal_secure.config.load import read_text

        before = self.j.policy_before
        if before is None or not self.path.exists() or not self._names(self.j.new_ca):
            return  # never switched, or switched back already
        text = read_text(self.path, str(POLICY))
        switched = self._set(before, self.j.new_ca)
        after = before if switched == text else self._set(text, self.j.old_ca)
        if after != text:
            self._write(after)
