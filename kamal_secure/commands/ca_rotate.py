"""`kamal-secure ca rotate`: a new CA trusted on every host, proven, then the old one removed.

The protocol and its rules are in :mod:`kamal_secure.remediate.ca_rotate`; this module runs
it against the hosts. Every login here is the deploy user with a certificate alone (one
per CA, minted once per run and kept in memory); root's TrustedUserCAKeys file is read and
replaced (compare-and-swap) through ``sudo -n`` unless the deploy user is root.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamal_secure.commands.fleet_cmd import add_target_options, confirmed, targets
from kamal_secure.commands.journalled import (
    Failed,
    JournalledSteps,
    Paused,
    check_progress,
    drive,
)
from kamal_secure.config.inventory import Inventory, Target
from kamal_secure.errors import (
    EXIT_CLEAN,
    EXIT_DECLINED,
    CheckIncomplete,
    KamalSecureError,
    UsageError,
)
from kamal_secure.remediate import harden as ops
from kamal_secure.remediate.ca_rotate import CaJournal, ca_line, holds, with_line, without_line
from kamal_secure.remediate.journal import kill_point

if TYPE_CHECKING:
    from kamal_secure.remediate.certs import CaSource
    from kamal_secure.remote.session import Connector, Session

VALIDITY = 60  # minutes: the run's own certificates (one per CA) last this long
POLICY = Path(".kamal/secure.yml")


def add_parser(sub: Any) -> None:
    """The ``rotate`` subcommand of ``kamal-secure ca``."""
    p = sub.add_parser("rotate", add_help=False, help="a new CA on every host, then the old "
                       "one removed (journalled: --resume, --abort)",
                       description="Trust a new CA beside the old one on every host, prove "
                       "it, switch certificate mode to it, then remove the old CA.")
    add_target_options(p, "show the plan; change nothing")
    p.add_argument("--path", default=None, help="where to create the new CA key (default: "
                   "beside the old one, with a -rotated-STAMP suffix)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted rotation")
    group.add_argument("--abort", action="store_true", help="roll an interrupted rotation back")
    p.add_argument("--passphrase-from-env", metavar="VAR", default=None,
                   help="the new CA key's passphrase is in this environment variable")


def run(opts: argparse.Namespace) -> int:
    from kamal_secure.remediate import keygen

    if opts.hosts or opts.roles:
        raise UsageError("ca rotate changes every host (a host left out would refuse the new "
                         "CA's certificates): -h/-r are not taken")
    project, inventory = targets(opts)
    root = project.root
    journal = CaJournal.load(root)
    check_progress(journal, opts.resume, opts.abort, "a CA rotation", "ca rotate")
    if not inventory.ssh.keys:
        raise UsageError("ssh.keys is not set: ca rotate logs in with the deploy key and a "
                         "certificate")
    signer = _Signer(Path(inventory.ssh.keys[0]).expanduser(), inventory.ssh.user,
                     keygen.passphrase_from_env(opts.passphrase_from_env))
    try:
        named = signer.named(root)  # first: a CA in a variable can be read only once
    except KamalSecureError:
        if not opts.abort:  # an abort signs with the journal's CAs, not the named one
            raise
        named = None
    if journal is None:
        journal = _start(root, named, opts.path)
        sys.stdout.write(f"would trust a new CA, {journal.new_ca}, beside the old one "
                         f"({_fingerprint(journal.old_line)}, {journal.source}) on "
                         f"{len(inventory.targets)} host(s), prove it, then remove the old "
                         "one\n")
        if opts.dry_run:
            return EXIT_CLEAN
        if not confirmed(opts.yes, "Rotate the CA?"):
            return EXIT_DECLINED
        journal.save(root)
    return _drive(_Steps(journal, inventory, root, signer, opts.timeout), opts.abort)


def _drive(steps: _Steps, abort: bool) -> int:
    return drive(steps, steps.forward, abort,
                 lambda: "CA rotation aborted: every host trusts the old CA again (its "
                 "certificate proven), the new CA is removed from the hosts and its key "
                 "moved aside",
                 lambda: f"CA rotated: every host trusts only {steps.j.new_ca}; the old CA "
                 f"key is {steps.j.retired_as}")


def _fingerprint(line: str) -> str:
    from kamal_secure.facts.keys import parse_public

    try:
        return parse_public(line)[0].fingerprint
    except ValueError as err:
        return f"an unreadable key: {err}"


def _start(root: Path, named: str | None, path: str | None) -> CaJournal:
    from kamal_secure.facts.keys import DEFAULT_CA_PATH, ca_choice
    from kamal_secure.policy.file import policy_for
    from kamal_secure.remediate import ca
    from kamal_secure.remediate.rotate import new_key_path

    policy_ca = policy_for(root).certificates.ca
    old = Path(policy_ca or DEFAULT_CA_PATH).expanduser()
    choice = ca_choice(policy_ca, os.environ)  # as certificate mode decides it
    env_name = choice.env if choice is not None else None
    source = ("default" if choice is None else "env" if choice.env
              else "agent" if choice.agent else "policy")
    if named is None:  # nothing named: the default file, when it is there
        named = _Signer.line_of(old)
    new = Path(path).expanduser() if path else Path(new_key_path(str(old)))
    ca.check_path(new, cwd=root)  # before anything is journalled
    return CaJournal(str(old), named, str(new.absolute()), source, env_name or None)


class _Signer:
    """One certificate per CA for this run (minted once: a CA in an environment variable
    can be read only once), for the deploy key, principal ssh.user, kept in memory."""

    def __init__(self, key: Path, user: str, passphrase: bytes | None) -> None:
        self.key, self.user, self.passphrase = key, user, passphrase
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
        from kamal_secure.gate.run import account_name
        from kamal_secure.remediate import certs

        cert = certs.mint(source, self.public, self.user, VALIDITY,
                          certs.key_id(account_name(), "", "ca rotate"), certs.serial_now())
        line = certs.signer(cert)
        self.certs.setdefault(line, cert)
        return line

    def named(self, root: Path) -> str | None:
        """The CA certificate mode names now (its line); None when it names none."""
        from kamal_secure.gate.certificate import ca_source
        from kamal_secure.policy.file import policy_for

        if self.env_line is not None:
            return self.env_line
        source = ca_source(policy_for(root).certificates.ca, os.environ)
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


class _Steps(JournalledSteps):
    COMMAND = "ca rotate"
    ROLLED_BACK = "every host trusts the old CA (its certificate proven), the new CA is removed"

    def __init__(self, journal: CaJournal, inventory: Inventory, root: Path, signer: _Signer,
                 timeout: float) -> None:
        super().__init__(journal, inventory, root)
        self.j, self.signer, self.timeout = journal, signer, timeout
        self._conns: dict[str, Connector] = {}

    # -- the two CAs --------------------------------------------------------------------
    def line(self, which: str) -> str:
        return self.j.old_line if which == "old" else _Signer.line_of(Path(self.j.new_ca))

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
            _HostFile(sess, target).change(change, self.line(which), self.line(keep),
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
            told = _Policy(self.root, j).switch()
            j.advance(self.root, "switched")
            if told:
                raise Paused(told + "\nthen run `kamal-secure ca rotate --resume` to remove "
                             "the old CA from the hosts (or --abort)")
        if not j.done("removed"):
            named = self.signer.named(self.root)
            if named == j.old_line:
                raise Failed("certificate mode still names the old CA: name the new one "
                             f"({j.new_ca}) first, then --resume (or --abort)")
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
            same = _Signer.line_of(old) == self.j.old_line
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
        _Policy(self.root, j).switch_back()  # only now: the old CA works on every host
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


class _HostFile:
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


class _Policy:
    """What certificate mode names: ``certificates.ca`` in .kamal/secure.yml is rewritten
    (the rest of the file kept); a CA from the environment or the agent is said, never
    touched, and never printed."""

    def __init__(self, root: Path, journal: CaJournal) -> None:
        self.root, self.j, self.path = root, journal, root / POLICY

    def _names(self, path: str) -> bool:
        from kamal_secure.policy.file import policy_for

        ca = policy_for(self.root).certificates.ca
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
