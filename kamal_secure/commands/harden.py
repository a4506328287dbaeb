"""`kamal-secure harden`: apply the sshd baseline on every host without locking anyone out."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from kamal_secure.commands import Parser
from kamal_secure.commands.fleet_cmd import add_target_options, confirmed, on_every_host, targets
from kamal_secure.config.inventory import Target, local_registry
from kamal_secure.errors import CheckIncomplete, UsageError
from kamal_secure.host_policy import load_host_policy
from kamal_secure.ops import harden as ops

UNSAFE = {"password", "keyboard-interactive"}


def _parser() -> Parser:
    p = Parser(prog="kamal-secure harden", add_help=False,
               description="Write the sshd baseline to sshd_config.d/00-kamal-secure.conf.")
    add_target_options(p, "show the drop-in and what it changes in `sshd -T`; change nothing")
    p.add_argument("--allow-from", action="append", default=[], metavar="CIDR",
                   help="AllowUsers deploy@CIDR instead of any address (repeat)")
    p.add_argument("--allow-user", action="append", default=[], metavar="NAME",
                   help="another user AllowUsers must keep (repeat)")
    return p


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    project, inventory = targets(opts)
    if not inventory.ssh.keys:
        raise UsageError("ssh.keys is not set: harden proves a new login with the deploy key",
                         hint="run `kamal-secure keygen --write-config` and `authorize` first")
    policy = load_host_policy(project.root)
    forwarding = "remote" if local_registry(project) else "no"
    base = ops.baseline(inventory.ssh.user, opts.allow_from, opts.allow_user,
                        {f: getattr(policy, f) for f in ("max_auth_tries", "login_grace_time",
                                                         "client_alive_interval",
                                                         "client_alive_count_max")},
                        forwarding)
    sys.stdout.write(f"{ops.DROPIN} on {len(inventory.targets)} host(s):\n{base.text()}\n")
    if not opts.dry_run and not confirmed(opts.yes, "Apply it?"):
        return 2
    from kamal_secure.remote import actions, session

    login = actions.connector(inventory, project.root,
                              session.load_login_keys(inventory.ssh), opts.timeout)
    proof = actions.only_key(inventory, project.root, Path(inventory.ssh.keys[0]),
                             opts.timeout)
    work = _Host(login, proof, base, opts.dry_run)
    return on_every_host(inventory, work.run)


class _Host:
    def __init__(self, login: Any, proof: Any, base: ops.Baseline, dry_run: bool) -> None:
        self.login, self.proof, self.base, self.dry_run = login, proof, base, dry_run

    def run(self, target: Target) -> tuple[bool, str]:
        from kamal_secure.remote import actions

        return actions.on_host(self.login, target, "cannot log in",
                               lambda sess: _Apply(sess, self, target).apply())


class _Apply:
    """One host: the open session stays open until the new settings are proven."""

    def __init__(self, sess: Any, host: _Host, target: Target) -> None:
        self.sess, self.host, self.target = sess, host, target
        self.prefix: list[str] = []

    def root(self, script: str, *args: str, stdin: bytes = b"") -> tuple[int, str]:
        code, out = self.sess.run([*self.prefix, "sh", "-c", script, "sh", *args], stdin)
        return int(code), str(out)

    def apply(self) -> tuple[bool, str]:
        problem = self._preflight()
        if problem:
            return False, problem
        _, out = self.root(ops.READ)
        previous = out.split("\n", 1)[1] if out.startswith("present") else None
        wanted = self.host.base.text()
        if previous == wanted:
            return True, "already hardened (unchanged)"
        if self.host.dry_run:
            return True, self._dry_run()
        return self._change(previous, wanted)

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

    def _dry_run(self) -> str:
        diff = ops.mismatches(self._effective(), self.host.base.expected())
        return ("would change (sshd -T now -> after): " + "; ".join(diff) if diff
                else "would change no effective setting")

    def _change(self, previous: str | None, wanted: str) -> tuple[bool, str]:
        code, out = self.root(ops.WRITE, stdin=wanted.encode())
        if code != 0:
            return False, f"could not write {ops.DROPIN}: {out.strip()[:200]}"
        code, out = self.root(ops.VALIDATE)
        if code != 0:
            self._restore(previous, reload=False)
            return False, f"`sshd -t` rejected the result, nothing changed: {out.strip()[:300]}"
        wrong = ops.mismatches(self._effective(), self.host.base.expected())
        if wrong:
            self._restore(previous, reload=False)
            return False, ("another file wins over the drop-in, nothing changed (sshd -T now "
                           "-> wanted): " + "; ".join(wrong[:5]))
        code, out = self.root(ops.RELOAD)
        if code != 0:
            self._restore(previous, reload=False)
            return False, f"could not reload sshd, nothing changed: {out.strip()[:200]}"
        why = self._prove()
        if why is None:
            return True, "hardened; a new login with the deploy key works, no password offered"
        self._restore(previous, reload=True)
        return False, f"reverted: {why}; the previous settings are back"

    def _prove(self) -> str | None:
        from kamal_secure.remote import actions

        why = "no new connection"
        for _ in range(10):
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

    def _restore(self, previous: str | None, reload: bool) -> None:
        if previous is None:
            self.root(ops.REMOVE)
        else:
            self.root(ops.WRITE, stdin=previous.encode())
        if reload:
            self.root(ops.RELOAD)
