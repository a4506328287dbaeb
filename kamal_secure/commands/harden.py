"""`kamal-secure harden`: apply the sshd baseline on every host without locking anyone out."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
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
    policy = policy_for(project.root).hosts
    forwarding = "remote" if local_registry(project) else "no"
    base = ops.baseline(inventory.ssh.user, opts.allow_from, opts.allow_user,
                        {f: getattr(policy, f) for f in ("max_auth_tries", "login_grace_time",
                                                         "client_alive_interval",
                                                         "client_alive_count_max")},
                        forwarding)
    sys.stdout.write(f"{ops.DROPIN} on {len(inventory.targets)} host(s):\n{base.text()}\n")
    if not opts.dry_run and not confirmed(opts.yes, "Apply it?"):
        return EXIT_DECLINED
    from kamal_secure.remote import actions, session

    login = actions.connector(inventory, project.root,
                              session.load_login_keys(inventory.ssh), opts.timeout)
    proof = actions.only_key(inventory, project.root, Path(inventory.ssh.keys[0]),
                             opts.timeout)
    work = _Host(login, proof, base, opts.dry_run, opts.allow_from, opts.rollback_after)
    return on_every_host(inventory, work.run)


class _Host:
    def __init__(self, login: Connector, proof: Connector, base: ops.Baseline, dry_run: bool,
                 allow_from: list[str], rollback_after: float) -> None:
        self.login, self.proof, self.base, self.dry_run = login, proof, base, dry_run
        self.allow_from, self.rollback_after = allow_from, rollback_after

    def run(self, target: Target) -> tuple[bool, str]:
        from kamal_secure.remote import actions

        return actions.on_host(self.login, target, "cannot log in",
                               lambda sess: _Apply(sess, self, target).apply())


class _Apply:
    """One host: the open session stays open until the new settings are proven."""

    def __init__(self, sess: Session, host: _Host, target: Target) -> None:
        self.sess, self.host, self.target = sess, host, target
        self.prefix: list[str] = []
        self.token = secrets.token_hex(8)
        self.fires_at = 0.0  # when the host's rollback timer fires (our clock)

    def root(self, script: str, *args: str, stdin: bytes = b"") -> tuple[int, str]:
        code, out = self.sess.run([*self.prefix, "sh", "-c", script, "sh", *args], stdin)
        return int(code), str(out)

    def put(self, text: str, before: str | None) -> tuple[int, str]:
        """Replace the drop-in with ``text`` (verified on the host before the rename);
        with ``before``, only if it still holds that ("": absent or empty)."""
        from kamal_secure.remote import actions

        data = text.encode()
        code, out = self.sess.run([*self.prefix, *actions.put_argv(
            ops.DROPIN, data, "644", None if before is None else before.encode())], data)
        return int(code), str(out)

    def apply(self) -> tuple[bool, str]:
        problem = self._preflight()
        if problem:
            return False, problem
        code, out = self.root(ops.PENDING)
        if code == 8:  # whatever the files say now, that switch will roll them back
            return False, self._pending(out)
        _, out = self.root(ops.READ)
        previous = out.split("\n", 1)[1] if out.startswith("present") else None
        wanted = self.host.base.text()
        effective = self._effective()
        if previous == wanted and self._running_as_wanted(effective):
            return True, "already hardened (unchanged): sshd -T and the live probe agree"
        if self.host.dry_run:
            return True, self._dry_run(effective)
        # The file says hardened but the daemon does not run it (a run killed before the
        # reload): the rollback target is no drop-in, closer to what sshd runs now.
        try:
            return self._change(previous, previous == wanted, wanted)
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
        return (not ops.mismatches(effective, self.host.base.expected())
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
        diff = ops.mismatches(effective, self.host.base.expected())
        return ("would change (sshd -T now -> after): " + "; ".join(diff) if diff
                else "would change no effective setting")

    def _crash(self, stage: str) -> None:
        if os.environ.get(CRASH_ENV) == f"harden-{stage}":
            os._exit(99)  # the kill tests stop the process right here

    def _arm(self, to_absent: bool) -> str | None:
        """Start the dead man's switch; None, or why not."""
        code, out = self.root(ops.ARM, f"{self.host.rollback_after:.0f}", self.token,
                              "absent" if to_absent else "", ops.RESTORE)
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

    def _change(self, current: str | None, to_absent: bool, wanted: str) -> tuple[bool, str]:
        """``to_absent``: the rollback removes the drop-in instead of restoring ``current``."""
        problem = self._arm(to_absent)
        if problem:
            return False, problem
        code, out = self.put(wanted, current or "")
        if code != 0:
            return self._restore(f"could not write {ops.DROPIN}", out.strip()[:200])
        self._crash("written")
        code, out = self.root(ops.VALIDATE)
        if code != 0:
            return self._restore("`sshd -t` rejected the result", out.strip()[:300])
        effective = self._effective()
        wrong = ops.mismatches(effective, self.host.base.expected())
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
        return True, "hardened; a new login with the deploy key works, no password offered"

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
                why = f"a new login with the deploy key failed ({err.message})"
                continue
            offered = set(fresh.offered or ())
            fresh.close()
            if fresh.offered is None or offered & UNSAFE:
                return f"the live probe still offers {sorted(offered & UNSAFE) or ['none']}"
            return None
        return why

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
