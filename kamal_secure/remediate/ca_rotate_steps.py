"""The steps of `kamal-secure ca rotate` (the protocol: :mod:`kamal_secure.remediate.ca_rotate`),
run against the hosts. Every login here is the deploy user with a certificate alone (one per
CA, minted once per run and kept in memory, :class:`Signer`); root's TrustedUserCAKeys file
is read and replaced (compare-and-swap) through ``sudo -n`` unless the deploy user is root.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.errors import CheckIncomplete, KamalSecureError, UsageError
from kamal_secure.remediate import harden as ops
from kamal_secure.remediate.ca_rotate import CaJournal, HostFile, PolicySwitch, ca_line
from kamal_secure.remediate.journal import Failed, JournalledSteps, Paused

if TYPE_CHECKING:
    from kamal_secure.config.inventory import Inventory, Target
    from kamal_secure.remediate.certs import CaSource
    from kamal_secure.remote.session import Connector, Session

VALIDITY = 60  # minutes: the run's own certificates (one per CA) last this long


class Signer:
    """One certificate per CA for this run (minted once: a CA in an environment variable
    can be read only once), for the deploy key, principal ssh.user, kept in memory."""

    def __init__(self, key: Path, user: str, passphrase: bytes | None, who: str,
                 named_source: Callable[[], CaSource | None]) -> None:
        self.key, self.user, self.passphrase = key, user, passphrase
        self.who = who  # the account name, in the certificates' key id
        self.named_source = named_source  # the CA certificate mode names now, if any
        try:
            self.public = key.with_name(key.name + ".pub").read_text()
        except OSError as err:
            raise UsageError(f"{key}.pub: {err.strerror or err}") from None
        self.certs: dict[str, bytes] = {}  # CA line -> certificate
        self.why: dict[str, str] = {}  # CA line -> why none could be minted
        self.env_line: str | None = None

    @staticmethod
    def line_of(private: Path) -> str:
        try:
            return ca_line(private.with_name(private.name + ".pub").read_text())
        except OSError as err:
            raise UsageError(f"the CA: {private}.pub: {err.strerror or err} (name the CA as "
                             "certificate mode does: certificates.ca, KAMAL_SECURE_CA_ENV, "
                             "KAMAL_SECURE_CA_AGENT)") from None

    def mint(self, source: CaSource) -> str:
        from kamal_secure.remediate import certs

        cert = certs.mint(source, self.public, self.user, VALIDITY,
                          certs.key_id(self.who, "", "ca rotate"), certs.serial_now())
        line = certs.signer(cert)
        self.certs.setdefault(line, cert)
        return line

    def named(self) -> str | None:
        """The CA certificate mode names now (its line); None when it names none."""
        if self.env_line is not None:
            return self.env_line
        source = self.named_source()
        if source is None:
            return None
        line = self.mint(source)
        if source.env is not None:
            self.env_line = line
        return line

    def cert(self, line: str, source: CaSource | None) -> bytes | None:
        """A certificate signed by the CA ``line``, from ``source`` if not minted yet."""
        if line not in self.certs and source is not None:
            try:
                if self.mint(source) != line:
                    self.why[line] = f"{source.describe()} is another CA's key"
            except (KamalSecureError, OSError) as err:
                self.why[line] = getattr(err, "message", None) or str(err)
        return self.certs.get(line)


class Steps(JournalledSteps):
    COMMAND = "ca rotate"
    ROLLED_BACK = "every host trusts the old CA (its certificate proven), the new CA is removed"

    def __init__(self, journal: CaJournal, inventory: Inventory, root: Path, signer: Signer,
                 timeout: float, policy_ca: Callable[[], Path | None]) -> None:
        super().__init__(journal, inventory, root)
        self.j, self.signer, self.timeout = journal, signer, timeout
        self.policy = PolicySwitch(root, journal, policy_ca)
        self._conns: dict[str, Connector] = {}

    # -- the two CAs --------------------------------------------------------------------
    def line(self, which: str) -> str:
        return self.j.old_line if which == "old" else Signer.line_of(Path(self.j.new_ca))

    def _source(self, which: str) -> CaSource | None:
        from kamal_secure.remediate.certs import CaSource

        if which == "new":
            return CaSource(path=Path(self.j.new_ca), passphrase=self.signer.passphrase)
        old = Path(self.j.old_ca)
        if self.j.source == "agent":
            return CaSource(agent=old.with_name(old.name + ".pub"))
        return CaSource(path=old) if self.j.source != "env" and old.exists() else None

    def _conn(self, which: str) -> Connector:
        from kamal_secure.remote import actions

        line = self.line(which)
        if line not in self._conns:
            cert = self.signer.cert(line, self._source(which))
            if cert is None:
                why = self.signer.why.get(line, "its private key is not available here")
                raise Failed(f"the {which} CA cannot sign a certificate here ({why})")
            self._conns[line] = actions.only_key(self.inv, self.root, self.signer.key,
                                                 self.timeout, cert)
        return self._conns[line]

    def can_login(self, which: str, target: Target) -> tuple[bool, str]:
        from kamal_secure.remote import actions

        try:
            conn = self._conn(which)
        except Failed as err:
            return False, str(err)
        return actions.can_login(conn, target)

    # -- one host -----------------------------------------------------------------------
    def _login(self, target: Target, order: list[str]) -> Session:
        from kamal_secure.remote import actions

        reasons = []
        for which in order:
            try:
                return actions.open_target(self._conn(which), target)
            except (CheckIncomplete, Failed) as err:
                reasons.append(f"with the {which} CA's certificate: "
                               f"{getattr(err, 'message', None) or err}")
        raise Failed(f"{target.label}: cannot log in ({'; '.join(reasons)})")

    def _edit(self, target: Target, login: list[str], change: str, which: str,
              keep: str) -> None:
        """Add or remove the ``which`` CA's line in the host's TrustedUserCAKeys file, over
        a session that logged in with the first of ``login`` that works; then prove that a
        certificate of the ``keep`` CA alone logs in, or put the file back."""
        assert change == "add" or which not in login
        sess = self._login(target, login)
        try:
            self.j.hosts[target.name] = f"{change} {which} started"
            self.j.save(self.root)  # before the write: an abort must visit this host
            HostFile(sess, target).change(change, self.line(which), self.line(keep),
                                           lambda: self.can_login(keep, target))
        except CheckIncomplete as err:
            raise Failed(f"{target.label}: {ops.CA_FILE} not changed: {err.message}") from None
        finally:
            sess.close()
        self.j.hosts[target.name] = f"{change} {which} done"
        self.j.save(self.root)

    def _verify(self, which: str, targets: list[Target] | None = None) -> None:
        def verify(target: Target) -> None:
            ok, why = self.can_login(which, target)
            if not ok:
                raise Failed(f"{target.label}: a certificate of the {which} CA alone cannot "
                             f"log in: {why}")

        self._each(f"proving the {which} CA", verify, targets)

    # -- forward ------------------------------------------------------------------------
    def forward(self) -> None:
        from kamal_secure.remediate import ca

        j = self.j
        self.refuse_if_aborting(j.aborting)
        if not j.done("generated"):
            if not Path(j.new_ca).exists():
                ca.init(Path(j.new_ca), self.signer.passphrase, cwd=self.root)
            j.advance(self.root, "generated")
        if not Path(j.new_ca).exists():
            raise Failed(f"the new CA key {j.new_ca} is gone: roll back with --abort")
        self._until_verified(self._add_new, lambda: self._verify("new"))
        self._finish()

    def _add_new(self) -> None:
        self._each("trusting the new CA",
                   lambda target: self._edit(target, ["old", "new"], "add", "new", "new"))

    def _finish(self) -> None:
        j = self.j
        if not j.done("switched"):
            told = self.policy.switch()
            j.advance(self.root, "switched")
            if told:
                raise Paused(told + "\nthen run `kamal-secure ca rotate --resume` to remove "
                             "the old CA from the hosts (or --abort)")
        if not j.done("removed"):
            named = self.signer.named()  # only the proven new CA may be the one left
            if named == j.old_line:
                raise Failed("certificate mode still names the old CA: name the new one "
                             f"({j.new_ca}) first, then --resume (or --abort)")
            if named is None:
                raise Failed("certificate mode names no CA here, so nothing shows that "
                             "deploys sign with the new one: name it (certificates.ca, "
                             "KAMAL_SECURE_CA_ENV or KAMAL_SECURE_CA_AGENT) as the gate "
                             f"will ({j.new_ca}), then --resume (or --abort)")
            if named != self.line("new"):  # unproven on the hosts
                raise Failed("certificate mode names a CA that is neither the old nor the "
                             f"new one: name the new one ({j.new_ca}), then --resume (or "
                             "--abort)")
            self._each("removing the old CA", lambda target: self._edit(
                target, ["new"], "remove", "old", "new"))
            j.advance(self.root, "removed")
        if not j.done("retired"):
            j.retired_as = self._retire_old()
            j.advance(self.root, "retired")
        CaJournal.remove(self.root)

    def _retire_old(self) -> str:
        from kamal_secure.remediate.rotate import retire

        old = Path(self.j.old_ca)
        try:
            same = Signer.line_of(old) == self.j.old_line
        except UsageError:
            same = False
        if not same or not old.exists():
            where = f"${self.j.env_name}" if self.j.env_name else "the ssh-agent or elsewhere"
            return f"not a file here ({where}): delete it there"
        return retire(old, shred=False)

    # -- abort --------------------------------------------------------------------------
    def abort(self) -> None:
        """Back to the old CA: its line back on every host and its certificate proven first,
        then the policy, then the new CA's line off the hosts, then its key moved aside."""
        from kamal_secure.remediate.rotate import retire

        j = self.j
        if j.done("retired"):
            raise Failed("too late to abort: the old CA key is retired; finish with --resume")
        self._conn("old")  # every step back is proven with the old CA's certificate
        j.aborting = True
        j.save(self.root)
        have_new = Path(j.new_ca).exists()
        self._each("trusting the old CA again", lambda t: self._put_back_old(t, have_new))
        self.policy.switch_back()  # only now: the old CA works on every host
        j.step = "started"
        j.save(self.root)
        if Path(j.new_ca + ".pub").exists():  # its line: whether or not its key is still here
            self._each("removing the new CA", self._take_new_off)
        if have_new:
            retire(Path(j.new_ca), shred=False)
        CaJournal.remove(self.root)

    def _put_back_old(self, target: Target, have_new: bool) -> None:
        ok, why = self.can_login("old", target)
        if ok:
            self.state[target.label] = "the old CA's certificate logs in"
            return
        if target.name not in self.j.hosts:
            self.state[target.label] = f"never changed by this rotation ({why})"
            return
        if not have_new:
            raise Failed(f"{target.label}: the old CA's certificate does not log in ({why}) "
                         "and the new CA key is gone: nothing more changed")
        self._edit(target, ["new"], "add", "old", "old")
        self.state[target.label] = "the old CA put back (logged in with the new CA)"

    def _take_new_off(self, target: Target) -> None:
        if target.name in self.j.hosts:
            self._edit(target, ["old"], "remove", "new", "old")
            self.state[target.label] = "the old CA's certificate logs in; the new CA removed"
