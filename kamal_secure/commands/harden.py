"""`kamal-secure harden`: apply the sshd baseline on every host without locking anyone out."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.commands import Parser
from kamal_secure.commands.fleet_cmd import add_target_options, confirmed, on_every_host, targets
from kamal_secure.config.inventory import Target, local_registry
from kamal_secure.errors import EXIT_DECLINED, CheckIncomplete, UsageError
from kamal_secure.policy.file import policy_for
from kamal_secure.remediate import harden as ops
from kamal_secure.remediate.rotate import CRASH_ENV

UNSAFE = {"password", "keyboard-interactive"}

if TYPE_CHECKING:
    from kamal_secure.remote.session import Connector, Session


def _parser() -> Parser:
    p = Parser(prog="kamal-secure harden", add_help=False,
               description="Write the sshd baseline to sshd_config.d/00-kamal-secure.conf.")
    add_target_options(p, "show the drop-in and what it changes in `sshd -T`; change nothing")
    p.add_argument("--allow-from", action="append", default=[], metavar="CIDR",
                   help="AllowUsers deploy@CIDR instead of any address (repeat)")
    p.add_argument("--rollback-after", type=_seconds, default=120.0, metavar="SECONDS",
                   help="the host restores the previous settings unless the new ones are "
                   "proven within this time (default 120)")
    p.add_argument("--allow-user", action="append", default=[], metavar="NAME",
                   help="another user AllowUsers must keep (repeat)")
    p.add_argument("--trust-ca", type=Path, metavar="CA.pub",
                   help="also trust this SSH CA for the deploy user (TrustedUserCAKeys, "
                   "principal ssh.user), proven by a login with a certificate alone")
    p.add_argument("--remove-static-keys", action="store_true",
                   help="with --trust-ca: then remove the deploy key from authorized_keys "
                   "on each host where the certificate login is proven")
    return p


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds from 1 to 3600")
    return float(int(seconds))


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    project, inventory = targets(opts)
    if not inventory.ssh.keys:
        raise UsageError("ssh.keys is not set: harden proves a new login with the deploy key",
                         hint="run `kamal-secure keygen --write-config` and `authorize` first")
    if opts.remove_static_keys and opts.trust_ca is None:
        raise UsageError("--remove-static-keys needs --trust-ca: the deploy key's line goes "
                         "only where a certificate login is proven")
    full = policy_for(project.root)
    policy = full.hosts
    forwarding = "remote" if local_registry(project) else "no"
    base = ops.baseline(inventory.ssh.user, opts.allow_from, opts.allow_user,
                        {f: getattr(policy, f) for f in ("max_auth_tries", "login_grace_time",
                                                         "client_alive_interval",
                                                         "client_alive_count_max")},
                        forwarding, trust_ca=opts.trust_ca is not None)
    key = Path(inventory.ssh.keys[0]).expanduser()
    trust = None
    if opts.trust_ca is not None:
        trust = _trust(opts.trust_ca, full.certificates.ca, key, inventory.ssh.user,
                       opts.rollback_after)
    sys.stdout.write(f"{ops.DROPIN} on {len(inventory.targets)} host(s):\n{base.text()}\n")
    if trust is not None:
        sys.stdout.write(f"{ops.CA_FILE}: {trust.ca_line}"
                         f"{ops.principals_file(inventory.ssh.user)}: {inventory.ssh.user}\n"
                         + ("then the deploy key leaves authorized_keys where the "
                            "certificate login is proven\n" if opts.remove_static_keys else ""))
    if not opts.dry_run and not confirmed(opts.yes, "Apply it?"):
        return EXIT_DECLINED
    from kamal_secure.remote import actions, session

    # with --trust-ca the certificate first: where the hosts trust the CA already and
    # --remove-static-keys took the key's line, only it logs in; elsewhere the key does
    keys = session.load_login_keys(inventory.ssh)
    if trust is not None:
        keys = [*actions.certified(key, trust.cert), *keys]
    login = actions.connector(inventory, project.root, keys, opts.timeout)
    proof = actions.only_key(inventory, project.root, key, opts.timeout,
                             trust.cert if trust is not None else None)
    work = _Host(login, proof, base, opts.dry_run, opts.allow_from, opts.rollback_after,
                 trust, opts.remove_static_keys)
    return on_every_host(inventory, work.run)


@dataclass(frozen=True)
class _Trust:
    """``--trust-ca``: the CA line the hosts get, the principal, and the certificate that
    proves a login with a certificate alone; ``key_data``: the deploy key's base64 data
    (its authorized_keys line, for ``--remove-static-keys``)."""

    ca_line: str
    principal: str
    cert: bytes
    key_data: str


def _trust(ca_pub: Path, policy_ca: Path | None, key: Path, user: str,
           rollback_after: float) -> _Trust:
    """Read the CA, mint the proof's certificate with the CA's private key (from the same
    places as certificate mode, else the file beside ``CA.pub``) and check that it is
    signed by that very CA: nothing goes to a host we cannot sign for."""
    from kamal_secure.facts.keys import parse_public
    from kamal_secure.gate.certificate import ca_source
    from kamal_secure.gate.run import account_name
    from kamal_secure.remediate import certs

    try:
        ca_line = ca_pub.expanduser().read_text()
        parse_public(ca_line)
        deploy_pub = key.with_name(key.name + ".pub").read_text()
    except OSError as err:
        raise UsageError(f"{err.filename}: {err.strerror or err}") from None
    except ValueError as err:
        raise UsageError(f"--trust-ca {ca_pub}: {err}") from None
    ca_line = " ".join(ca_line.split()[:2]) + "\n"  # no comment on the hosts
    source = ca_source(policy_ca, os.environ)
    if source is None:
        name = str(ca_pub.expanduser())
        if not name.endswith(".pub"):
            raise UsageError(f"--trust-ca {ca_pub}: name the CA's .pub (its private key "
                             "beside it, in certificates.ca, or as in certificate mode)")
        source = certs.CaSource(path=Path(name[:-4]))
    minutes = int(rollback_after // 60) + 10  # the proofs, with the switch's time
    cert = certs.mint(source, deploy_pub, user, minutes,
                      certs.key_id(account_name(), "", "harden --trust-ca"),
                      certs.serial_now())
    if certs.signer(cert).split() != ca_line.split():
        raise UsageError(f"--trust-ca {ca_pub}: {source.describe()} is another CA's key",
                         hint="name the CA's .pub whose private key signs")
    return _Trust(ca_line, user, cert, deploy_pub.split()[1])


class _Host:
    def __init__(self, login: Connector, proof: Connector, base: ops.Baseline, dry_run: bool,
                 allow_from: list[str], rollback_after: float, trust: _Trust | None = None,
                 remove_static: bool = False) -> None:
        self.login, self.proof, self.base, self.dry_run = login, proof, base, dry_run
        self.allow_from, self.rollback_after = allow_from, rollback_after
        self.trust, self.remove_static = trust, remove_static

    def files(self) -> dict[str, str]:
        """The files besides the drop-in that ``--trust-ca`` writes: path -> text."""
        if self.trust is None:
            return {}
        return {ops.CA_FILE: self.trust.ca_line,
                ops.principals_file(self.trust.principal): self.trust.principal + "\n"}

    def run(self, target: Target) -> tuple[bool, str]:
        from kamal_secure.remote import actions

        return actions.on_host(self.login, target, "cannot log in",
                               lambda sess: _Apply(sess, self, target).apply())


class _Apply:
    """One host: the open session stays open until the new settings are proven."""

    def __init__(self, sess: Session, host: _Host, target: Target) -> None:
        self.sess, self.host, self.target = sess, host, target
        self.base = host.base  # narrowed to the algorithms this host's sshd knows
        self.left_out: list[str] = []
        self.prefix: list[str] = []
        self.token = secrets.token_hex(8)
        self.fires_at = 0.0  # when the host's rollback timer fires (our clock)

    def root(self, script: str, *args: str, stdin: bytes = b"") -> tuple[int, str]:
        code, out = self.sess.run([*self.prefix, "sh", "-c", script, "sh", *args], stdin)
        return int(code), str(out)

    def put(self, text: str, before: str | None, path: str = ops.DROPIN) -> tuple[int, str]:
        """Replace root's ``path`` (the drop-in) with ``text``, 0644 (verified on the host
        before the rename); with ``before``, only if it still holds that ("": absent or
        empty). A missing directory (the principals') is created 0755."""
        from kamal_secure.remote import actions

        data = text.encode()
        code, out = actions.put(self.sess, path, data, "644",
                                None if before is None else before.encode(),
                                "755" if path.startswith(ops.PRINCIPALS_DIR) else "",
                                self.prefix)
        return int(code), str(out)

    def read(self, path: str) -> str | None:
        """Root's file ``path`` as it is now; None when it does not exist."""
        _, out = self.root(ops.READ, path)
        return out.split("\n", 1)[1] if out.startswith("present") else None

    def apply(self) -> tuple[bool, str]:
        problem = self._preflight()
        if problem:
            return False, problem
        try:
            self.base, self.left_out = self.host.base.narrowed(self._supported())
        except UsageError as err:
            return False, f"{err.message}; nothing changed"
        ok, message = self._apply()
        if self.left_out:
            message += (f" (this host's sshd does not know {', '.join(self.left_out)}: left "
                        "out of the drop-in)")
        return ok, message

    def _supported(self) -> dict[str, list[str]]:
        """Of each algorithm list in the baseline (and each optional keyword's value), what
        this host's sshd accepts."""
        wanted = dict(self.host.base.settings)
        keys = (*ops.ALGORITHMS, *ops.OPTIONAL)
        code, out = self.root(ops.SUPPORTED, *(f"{k}={wanted[k]}" for k in keys))
        if code != 0 or "probe-failed" in out.split():
            return {}  # `sshd -t` on the drop-in decides, as before
        found: dict[str, list[str]] = {k: [] for k in keys}
        for line in out.splitlines():
            key, _, name = line.partition(" ")
            if key in found:
                found[key].append(name)
        return found

    def _apply(self) -> tuple[bool, str]:
        code, out = self.root(ops.PENDING)
        if code == 8:  # whatever the files say now, that switch will roll them back
            return False, self._pending(out)
        previous = self.read(ops.DROPIN)
        others = {path: self.read(path) for path in self.host.files()}
        wanted = self.base.text()
        effective = self._effective()
        same = previous == wanted and all(others[p] == t for p, t in self.host.files().items())
        if same and self._running_as_wanted(effective):
            if self.host.remove_static and not self.host.dry_run:
                return self._remove_static("already hardened (unchanged)")
            return True, "already hardened (unchanged): sshd -T and the live probe agree"
        if self.host.dry_run:
            return True, self._dry_run(effective)
        # The file says hardened but the daemon does not run it (a run killed before the
        # reload): the rollback target is no drop-in, closer to what sshd runs now.
        try:
            done = self._change(previous, same, wanted, others)
            if done[0] and self.host.remove_static:
                return self._remove_static(done[1])
            return done
        except Exception as err:  # the session broke (a drop, a timeout) after arming
            if not self.fires_at:
                raise
            why = err.message if isinstance(err, CheckIncomplete) else str(err)
            return False, (f"{why}; the host's rollback timer restores the previous settings "
                           f"within {self.host.rollback_after:g}s of arming")

    def _running_as_wanted(self, effective: str) -> bool:
        """What sshd runs, not what the file says: ``sshd -T`` (the files on disk) and the
        live probe of this session (the running daemon) must both show the baseline."""
        offered = self.sess.offered
        return (not ops.mismatches(effective, self.base.expected())
                and offered is not None and not set(offered) & UNSAFE)

    def _preflight(self) -> str | None:
        if self.sess.endpoint.user != "root":
            code, _ = self.sess.run(["sudo", "-n", "true"])
            if code != 0:
                return "needs root or passwordless sudo (sudo -n) for the deploy user"
            self.prefix = ["sudo", "-n"]
        if self.root(ops.INCLUDED)[0] != 0:
            return ("/etc/ssh/sshd_config has no `Include /etc/ssh/sshd_config.d/*.conf`; add "
                    "it as the file's first line (kamal-secure does not edit the main file)")
        return None

    def _effective(self) -> str:
        _, conn = self.sess.run(["sh", "-c", 'set -- $SSH_CONNECTION; echo "$1"'])
        addr = conn.strip() or "127.0.0.1"
        return self.root(ops.EFFECTIVE, self.sess.endpoint.user,
                         self.sess.endpoint.hostname, addr)[1]

    def _dry_run(self, effective: str) -> str:
        holes = ops.loopholes(effective, self.sess.endpoint.user, self.host.allow_from)
        if holes:
            return "would refuse: " + _loophole_message(holes)
        diff = ops.mismatches(effective, self.base.expected())
        return ("would change (sshd -T now -> after): " + "; ".join(diff) if diff
                else "would change no effective setting")

    def _crash(self, stage: str) -> None:
        if os.environ.get(CRASH_ENV) == f"harden-{stage}":
            os._exit(99)  # the kill tests stop the process right here

    def _arm(self, to_absent: bool) -> str | None:
        """Start the dead man's switch (it restores the drop-in and ``--trust-ca``'s files);
        None, or why not."""
        code, out = self.root(ops.ARM, f"{self.host.rollback_after:.0f}", self.token,
                              "absent" if to_absent else "", ops.RESTORE, *self.host.files())
        if code == 8:
            return self._pending(out)
        if code != 0:
            return f"could not arm the rollback timer, nothing changed: {out.strip()[:200]}"
        self.fires_at = time.monotonic() + self.host.rollback_after
        self._crash("armed")
        return None

    def _pending(self, out: str) -> str:
        """An earlier run's switch is armed on this host: say when it fires (or, when its
        timer never ran, a reboot?, restore now)."""
        left, _, token = out.strip().partition("\n")
        if left == "expired":
            self.root(ops.RESTORE, token.strip(), "now")
            return ("an earlier interrupted run's rollback had not run; it has restored the "
                    "previous settings now: run harden again")
        return (f"an earlier interrupted harden run armed a rollback here; it restores the "
                f"previous settings within {left}s: run harden again after that")

    def _change(self, current: str | None, to_absent: bool, wanted: str,
                others: dict[str, str | None]) -> tuple[bool, str]:
        """``to_absent``: the rollback removes the drop-in (and ``--trust-ca``'s files)
        instead of restoring ``current`` (and ``others``, as read before)."""
        problem = self._arm(to_absent)
        if problem:
            return False, problem
        failed = self._write({**others, ops.DROPIN: current}, wanted)
        if failed:
            return self._restore(*failed)
        self._crash("written")
        code, out = self.root(ops.VALIDATE)
        if code != 0:
            return self._restore("`sshd -t` rejected the result", out.strip()[:300])
        effective = self._effective()
        wrong = ops.mismatches(effective, self.base.expected())
        if wrong:
            return self._restore("another file wins over the drop-in",
                                 "(sshd -T now -> wanted): " + "; ".join(wrong[:5]))
        holes = ops.loopholes(effective, self.sess.endpoint.user, self.host.allow_from)
        if holes:
            return self._restore("refused", _loophole_message(holes))
        self._crash("validated")
        code, out = self.root(ops.RELOAD)
        if code != 0:
            return self._restore("could not reload sshd", out.strip()[:200], reloaded=True)
        self._crash("reloaded")
        why = self._prove()
        if why is not None:
            return self._restore(why, "", reloaded=True)
        self._crash("proven")
        code, out = self.root(ops.CANCEL, self.token)
        if code != 0:
            return False, (f"{out.strip()[:200]}: the proof took longer than "
                           f"--rollback-after {self.host.rollback_after:g}; the previous "
                           "settings are back (raise --rollback-after and run harden again)")
        if self.host.trust is not None:
            return True, ("hardened, the CA trusted; a new login with a certificate alone "
                          "works, no password offered")
        return True, "hardened; a new login with the deploy key works, no password offered"

    def _write(self, before: dict[str, str | None], wanted: str) -> tuple[str, str] | None:
        """``--trust-ca``'s files, then the drop-in that names them (each compare-and-swap
        against ``before``); None, or (why, detail)."""
        for path, text in [*self.host.files().items(), (ops.DROPIN, wanted)]:
            code, out = self.put(text, before[path] or "", path)
            if code != 0:
                return f"could not write {path}", out.strip()[:200]
        return None

    def _prove(self) -> str | None:
        from kamal_secure.remote import actions

        why = "no new connection"
        for _ in range(10):
            if time.monotonic() + 1 > self.fires_at:  # the switch is about to fire anyway
                return f"{why} within --rollback-after {self.host.rollback_after:g}s"
            time.sleep(0.3)  # sshd re-executes itself on reload
            try:
                fresh = actions.open_target(self.host.proof, self.target)
            except CheckIncomplete as err:
                how = "a certificate alone" if self.host.trust else "the deploy key"
                why = f"a new login with {how} failed ({err.message})"
                continue
            offered = set(fresh.offered or ())
            fresh.close()
            if fresh.offered is None or offered & UNSAFE:
                return f"the live probe still offers {sorted(offered & UNSAFE) or ['none']}"
            return None
        return why

    def _remove_static(self, done: str) -> tuple[bool, str]:
        """``--remove-static-keys``, once the settings are kept: prove a new login with a
        certificate alone, remove the deploy key's authorized_keys line (compare-and-swap),
        prove it again; if that fails, put the line back. Dying in between leaves a host
        that a certificate was just proven to log in to."""
        from kamal_secure.remediate import authorize
        from kamal_secure.remote import actions

        assert self.host.trust is not None
        ok, why = actions.can_login(self.host.proof, self.target)
        if not ok:
            return False, (f"{done}; the deploy key stays in authorized_keys: a login with a "
                           f"certificate alone failed ({why})")
        change = authorize.without(authorize.read_current(self.sess), self.host.trust.key_data)
        if not change.changed:
            return True, f"{done}; the deploy key was not in authorized_keys"
        ok, out = authorize.apply_change(self.sess, change)
        if not ok:
            return False, f"{done}; could not remove the deploy key: {out}"
        self._crash("unkeyed")
        ok, why = actions.can_login(self.host.proof, self.target)
        if ok:
            return True, (f"{done}; the deploy key removed from authorized_keys, a "
                          "certificate alone still logs in")
        back, out = authorize.apply_change(self.sess, authorize.Change(change.after,
                                                                        change.before))
        return False, (f"{done}; without the deploy key's line a certificate login failed "
                       f"({why}): " + ("the line is back" if back else
                                       f"putting it back failed ({out}): check the host"))

    def _restore(self, why: str, detail: str, reloaded: bool = False) -> tuple[bool, str]:
        """Roll back now, through the switch's own restore (it also disarms the timer);
        sshd is reloaded only if it was reloaded with the new drop-in."""
        code, out = self.root(ops.RESTORE, self.token, "now" if reloaded else "files")
        if code != 0:
            return False, (f"{why} ({detail}); restoring the previous settings failed "
                           f"({out.strip()[:200]}): check the host")
        if not reloaded:
            return False, f"{why}, nothing changed: {detail}"
        return False, (f"reverted: {why}{': ' + detail if detail else ''}; the previous "
                       "settings are back and sshd runs them")


def _loophole_message(holes: list[str]) -> str:
    return ("AllowUsers "
            + ", ".join(holes[:5]) + " (set elsewhere; sshd adds up AllowUsers from every "
            "file) lets the deploy user in from any address, so --allow-from would restrict "
            "nothing; remove that entry (or make it user@CIDR) and run harden again")
