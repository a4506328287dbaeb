"""`kamal-secure rotate-key`: replace the deploy key on every host with no moment of lockout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.commands import Parser
from kamal_secure.commands.fleet_cmd import confirmed
from kamal_secure.commands.journalled import Failed, JournalledSteps, check_progress, drive
from kamal_secure.config.edit import replace_ssh_key
from kamal_secure.config.inventory import Inventory, Target, build_inventory
from kamal_secure.config.load import load_project, read_text
from kamal_secure.errors import (
    EXIT_CLEAN,
    EXIT_DECLINED,
    CheckIncomplete,
    UsageError,
)
from kamal_secure.fileio import fsync_dir, write_atomic
from kamal_secure.remediate import authorize as auth
from kamal_secure.remediate import keygen
from kamal_secure.remediate.rotate import Journal, kill_point, new_key_path, retire

if TYPE_CHECKING:
    import argparse

    from kamal_secure.remote.session import Connector, Session


def _parser() -> Parser:
    p = Parser(prog="kamal-secure rotate-key", add_help=False,
               description="Rotate the deploy key on every host without downtime.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-c", "--config-file", default="config/deploy.yml")
    p.add_argument("-d", "--destination", default=None)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted rotation")
    group.add_argument("--abort", action="store_true", help="roll an interrupted rotation back")
    p.add_argument("--shred", action="store_true", help="overwrite the old key, don't keep it")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    p.add_argument("--timeout", type=float, default=20.0)
    return p


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    root = Path.cwd()
    journal = Journal.load(root)
    check_progress(journal, opts.resume, opts.abort, "a rotation", "rotate-key")
    project = load_project(opts.config_file, opts.destination)
    inventory = build_inventory(project)
    if journal is None:
        journal = _start(inventory, opts.config_file)
        if opts.dry_run:
            sys.stdout.write(f"would rotate {journal.old_key} -> {journal.new_key} on "
                             f"{len(inventory.targets)} host(s)\n")
            return EXIT_CLEAN
        if not confirmed(opts.yes, "Rotate?"):
            return EXIT_DECLINED
        journal.save(root)
    steps = _Steps(journal, inventory, root, opts)
    return drive(steps, steps.forward, opts.abort,
                 lambda: "rotation aborted: deploy.yml names the old key again, which logs in "
                 "on every host; the new key is removed",
                 lambda: f"rotated: deploy.yml uses {journal.new_key}; the old key is "
                 f"{journal.retired_as}")


def _start(inventory: Inventory, config_file: str) -> Journal:
    if not inventory.ssh.keys:
        raise UsageError("ssh.keys is not set: nothing to rotate")
    if inventory.ssh.proxy is not None:
        raise UsageError("rotate-key does not rotate the key on the ssh.proxy jump host yet",
                         hint="authorize the new key on the jump host by hand first, or "
                         "rotate without the jump host")
    old = inventory.ssh.keys[0]
    return Journal(config_file, old, new_key_path(old))


class _Steps(JournalledSteps):
    COMMAND = "rotate-key"
    ROLLED_BACK = ("deploy.yml names the old key, which logs in on every host we changed; "
                   "the new key is removed")

    def __init__(self, journal: Journal, inventory: Inventory, root: Path,
                 opts: argparse.Namespace) -> None:
        super().__init__(journal, inventory, root)
        self.j, self.opts = journal, opts
        self._conns: dict[str, Connector] = {}

    def _key(self, written: str) -> Path:
        path = Path(written).expanduser()
        return path if path.is_absolute() else self.root / path

    def _line(self, written: str) -> tuple[str, str]:
        pub = self._key(written).with_name(self._key(written).name + ".pub")
        try:
            return auth.key_line(pub.read_text().strip(), None)
        except (OSError, ValueError) as err:
            raise Failed(f"{pub}: not a readable public key ({err})") from None

    def _conn(self, written: str) -> Connector:
        from kamal_secure.remote import actions

        if written not in self._conns:
            self._conns[written] = actions.only_key(self.inv, self.root, self._key(written),
                                                    self.opts.timeout)
        return self._conns[written]

    def _name(self, written: str) -> str:
        return "new" if written == self.j.new_key else "old"

    def _login(self, target: Target, keys: list[str]) -> Session:
        """A session logged in with the first of ``keys`` that works there."""
        from kamal_secure.remote import actions

        reasons = []
        for written in keys:
            if not self._key(written).exists():
                reasons.append(f"the {self._name(written)} key file is gone")
                continue
            try:
                return actions.open_target(self._conn(written), target)
            except CheckIncomplete as err:
                reasons.append(f"with the {self._name(written)} key: {err.message}")
        raise Failed(f"{target.label}: cannot log in ({'; '.join(reasons)})")

    def _edit(self, target: Target, login: list[str], change: str, key: str) -> None:
        """Add (``add``) or remove (``remove``) ``key`` on one host, over a session that
        logged in with one of ``login`` (never with ``key`` itself when removing it: the
        key we remove is never the last one of ours that logs in there)."""
        assert change == "add" or key not in login
        line, data = self._line(key)
        sess = self._login(target, login)
        try:
            self.j.hosts[target.name] = f"{change} {self._name(key)} started"
            self.j.save(self.root)  # before the write: an abort must visit this host
            current = auth.read_current(sess)
            edit = auth.merged(current, line, data) if change == "add" else auth.without(
                current, data)
            ok, why = auth.apply_change(sess, edit)
        except CheckIncomplete as err:
            ok, why = False, err.message
        finally:
            sess.close()
        if not ok:
            raise Failed(f"{target.label}: authorized_keys not changed: {why}")
        self.j.hosts[target.name] = f"{change} {self._name(key)} done"
        self.j.save(self.root)

    def _verify(self, written: str, targets: list[Target] | None = None) -> None:
        from kamal_secure.remote import actions

        def verify(target: Target) -> None:
            ok, why = actions.can_login(self._conn(written), target)
            if not ok:
                raise Failed(f"{target.label}: the {self._name(written)} key alone cannot log "
                             f"in: {why}")

        self._each(f"proving the {self._name(written)} key", verify, targets)

    def _write_config(self, text: str) -> None:
        write_atomic(Path(self.j.config_file), text)  # keeps its mode; through a symlink
        kill_point()

    def _switch_to_new(self) -> None:
        config = Path(self.j.config_file)
        text = read_text(config, str(config))
        if self.j.config_before is None:
            self.j.config_before = text
            self.j.save(self.root)
        edit = replace_ssh_key(text, self.j.new_key, str(config))
        if edit.changed:
            self._write_config(edit.after)

    def _switch_back(self) -> None:
        """deploy.yml as it was before the switch, byte for byte, when nobody edited it
        since; else only its ssh.keys line pointed back at the old key."""
        config = Path(self.j.config_file)
        text = read_text(config, str(config))
        before = self.j.config_before
        if before is not None and replace_ssh_key(before, self.j.new_key,
                                                  str(config)).after == text:
            after = before
        else:
            after = replace_ssh_key(text, self.j.old_key, str(config)).after
        if after != text:
            self._write_config(after)

    def forward(self) -> None:
        j = self.j
        self.refuse_if_aborting(j.aborting)
        if not j.done("generated"):
            new = self._key(j.new_key)
            if not new.exists():
                keygen.create(new, keygen.comment_for("rotated"))
            j.advance(self.root, "generated")
        if not self._key(j.new_key).exists():
            raise Failed(f"the new key {j.new_key} is gone: roll back with --abort")
        self._until_verified(self._add_new, lambda: self._verify(j.new_key))
        self._finish()

    def _add_new(self) -> None:
        j = self.j
        self._each("adding the new key",
                   lambda target: self._edit(target, [j.old_key, j.new_key], "add", j.new_key))

    def _finish(self) -> None:
        j = self.j
        if not j.done("switched"):
            self._switch_to_new()
            j.advance(self.root, "switched")
        if not j.done("removed"):
            self._switch_to_new()  # idempotent: deploy.yml must name the key we keep
            self._each("removing the old key", lambda target: self._edit(
                target, [j.new_key], "remove", j.old_key))
            j.advance(self.root, "removed")
        if not j.done("retired"):
            j.retired_as = retire(self._key(j.old_key), self.opts.shred)
            j.advance(self.root, "retired")
        Journal.remove(self.root)

    def abort(self) -> None:
        """Back to the old key: put it back and prove it first, then deploy.yml, then take
        the new key off the hosts, then delete it. Refuses (with the reason) rather than
        leave a host or deploy.yml without a working key."""
        j = self.j
        if j.done("retired") or not self._key(j.old_key).exists():
            raise Failed(f"too late to abort: the old key {j.old_key} is retired or gone; "
                         "finish with --resume")
        j.aborting = True
        j.save(self.root)
        have_new = self._key(j.new_key).exists()
        # 1. the old key logs in everywhere
        self._each("putting the old key back", lambda t: self._put_back_old(t, have_new))
        self._switch_back()  # 2. only now: the old key works on every host
        j.step = "started"
        j.save(self.root)
        if have_new:  # 3. the new key leaves the hosts, over sessions with the old key
            self._each("removing the new key", self._take_new_off)
        new_path = self._key(j.new_key)  # the private key first: without it the pair is unusable
        for path in (new_path, new_path.with_name(new_path.name + ".pub")):
            path.unlink(missing_ok=True)
        fsync_dir(new_path.parent)
        Journal.remove(self.root)

    def _put_back_old(self, target: Target, have_new: bool) -> None:
        from kamal_secure.remote import actions

        old, new = self.j.old_key, self.j.new_key
        ok, why = actions.can_login(self._conn(old), target)
        if ok:
            self.state[target.label] = "the old key logs in"
            return
        if target.name not in self.j.hosts:  # never changed by this rotation: as it was
            self.state[target.label] = f"never changed by this rotation ({why})"
            return
        if not have_new:
            raise Failed(f"{target.label}: the old key does not log in ({why}) and the new "
                         "key is gone: nothing more changed")
        self._edit(target, [new], "add", old)
        self._verify(old, [target])
        self.state[target.label] = "the old key put back (logged in with the new key)"

    def _take_new_off(self, target: Target) -> None:
        if target.name in self.j.hosts:
            self._edit(target, [self.j.old_key], "remove", self.j.new_key)
            self.state[target.label] = "the old key logs in; the new key is removed"
