"""`kamal-secure authorize`: the dedicated public key in authorized_keys on every host."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.commands import Parser
from kamal_secure.commands.fleet_cmd import add_target_options, confirmed, on_every_host, targets
from kamal_secure.config.inventory import Inventory, Target
from kamal_secure.errors import EXIT_DECLINED, UsageError
from kamal_secure.remediate import authorize as ops

if TYPE_CHECKING:
    from kamal_secure.remote.actions import Credential
    from kamal_secure.remote.session import Connector, Session


def _parser() -> Parser:
    p = Parser(prog="kamal-secure authorize", add_help=False,
               description="Add the deploy key (ssh.keys[0]) to authorized_keys on every host.")
    add_target_options(p, "show what would change; change nothing")
    p.add_argument("--identity", type=Path, action="append", default=[],
                   help="a key that logs in today (besides the agent and the deploy key)")
    p.add_argument("--from", dest="from_cidr", default=None, metavar="CIDR",
                   help='restrict the key to these source addresses (from="...")')
    return p


def _deploy_key(inventory: Inventory) -> Path:
    if not inventory.ssh.keys:
        raise UsageError("ssh.keys is not set", hint="run `kamal-secure keygen --write-config`")
    return Path(inventory.ssh.keys[0]).expanduser()


def _credentials(identities: list[Path], deploy_key: Path) -> list[Credential]:
    from kamal_secure.remote import actions, session

    keys: list[Credential] = []
    for path in identities:
        found = actions.key_from_file(path)
        if not found:
            raise UsageError(f"--identity {path}: not a usable private key")
        keys.extend(found)
    keys.extend(k for k in session.agent_keys() if k not in keys)
    keys.extend(actions.key_from_file(deploy_key))
    return keys


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    project, inventory = targets(opts)
    deploy_key = _deploy_key(inventory)
    pub = deploy_key.with_name(deploy_key.name + ".pub")
    try:
        line, data = ops.key_line(pub.read_text().strip(), opts.from_cidr)
    except (OSError, ValueError) as err:
        raise UsageError(f"{pub}: not a readable public key ({err})") from None
    sys.stdout.write(f"authorize {pub} for {inventory.ssh.user} on "
                     f"{len(inventory.targets)} host(s): {line[:60]}...\n")
    if not opts.dry_run and not confirmed(opts.yes, "Go ahead?"):
        return EXIT_DECLINED
    from kamal_secure.remote import actions

    work = _Work(actions.connector(inventory, project.root,
                                   _credentials(opts.identity, deploy_key), opts.timeout),
                 actions.only_key(inventory, project.root, deploy_key, opts.timeout),
                 line, data, opts.dry_run)
    return on_every_host(inventory, work.host)


class _Work:
    def __init__(self, login: Connector, proof: Connector, line: str, data: str,
                 dry_run: bool) -> None:
        self.login, self.proof, self.line, self.data, self.dry_run = (login, proof, line, data,
                                                                       dry_run)

    def host(self, target: Target) -> tuple[bool, str]:
        from kamal_secure.remote import actions

        return actions.on_host(self.login, target, "no working credential",
                               lambda sess: self._change(sess, target))

    def _change(self, sess: Session, target: Target) -> tuple[bool, str]:
        from kamal_secure.remote import actions

        change = ops.merged(ops.read_current(sess), self.line, self.data)
        if not change.changed:
            return True, "already authorized (unchanged)"
        if self.dry_run:
            return True, "would add the key (dry run: unchanged)"
        ok, out = ops.apply_change(sess, change)
        if not ok:
            return False, f"not changed: {out}"
        ok, why = actions.can_login(self.proof, target)
        if ok:
            return True, "key added; a new login with the deploy key alone works"
        ops.apply_change(sess, ops.Change(change.after, change.before))
        return False, (f"key added but the host still refuses it ({why}); the previous "
                       "authorized_keys is back (is AuthorizedKeysFile elsewhere?)")
