"""`kamal-secure rotate-key`: replace the deploy key on every host with no moment of lockout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kamal_secure.commands import Parser
from kamal_secure.config.edit import replace_ssh_key
from kamal_secure.config.inventory import Inventory, build_inventory
from kamal_secure.config.load import load_project, read_text
from kamal_secure.errors import EXIT_INCOMPLETE, CheckIncomplete, UsageError
from kamal_secure.ops import authorize as auth
from kamal_secure.ops import keygen
from kamal_secure.ops.rotate import Journal, new_key_path, retire


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


class Failed(Exception):
    pass


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    root = Path.cwd()
    journal = Journal.load(root)
    if journal is not None and not (opts.resume or opts.abort):
        raise UsageError(f"a rotation is in progress (step {journal.step})",
                         hint="kamal-secure rotate-key --resume, or --abort")
    if journal is None and (opts.resume or opts.abort):
        raise UsageError("no rotation in progress")
    project = load_project(opts.config_file, opts.destination)
    inventory = build_inventory(project)
    if journal is None:
        journal = _start(inventory, opts.config_file)
        if opts.dry_run:
            sys.stdout.write(f"would rotate {journal.old_key} -> {journal.new_key} on "
                             f"{len(inventory.targets)} host(s)\n")
            return 0
        if not opts.yes and not (sys.stdin.isatty() and input("Rotate? [y/N] ") in ("y", "yes")):
            sys.stderr.write("kamal-secure: pass --yes to rotate without a terminal\n")
            return 2
        journal.save(root)
    steps = _Steps(journal, inventory, root, opts)
    try:
        if opts.abort:
            steps.abort()
            sys.stdout.write("rotation aborted: the old key is in use and the new one removed\n")
            return 0
        steps.forward()
    except Failed as err:
        sys.stderr.write(f"kamal-secure: {err}\n")
        return EXIT_INCOMPLETE
    sys.stdout.write(f"rotated: deploy.yml uses {journal.new_key}; the old key is "
                     f"{journal.retired_as}\n")
    return 0


def _start(inventory: Inventory, config_file: str) -> Journal:
    if not inventory.ssh.keys:
        raise UsageError("ssh.keys is not set: nothing to rotate")
    if inventory.ssh.proxy is not None:
        raise UsageError("rotate-key does not rotate the key on the ssh.proxy jump host yet",
                         hint="authorize the new key on the jump host by hand first, or "
                         "rotate without the jump host")
    old = inventory.ssh.keys[0]
    return Journal(config_file, old, new_key_path(old))


class _Steps:
    def __init__(self, journal: Journal, inventory: Inventory, root: Path, opts: Any) -> None:
        self.j, self.inv, self.root, self.opts = journal, inventory, root, opts

    def _key(self, written: str) -> Path:
        path = Path(written).expanduser()
        return path if path.is_absolute() else self.root / path

    def _line(self, written: str) -> tuple[str, str]:
        pub = self._key(written).with_name(self._key(written).name + ".pub")
        return auth.key_line(pub.read_text().strip(), None)

    def _on_hosts(self, login_with: str, change: str, only: set[str] | None = None) -> None:
        """Add (``add``) or take back (``unadd``) the new key, or ``remove`` the old one."""
        from kamal_secure.remote import actions

        conn = actions.only_key(self.inv, self.root, self._key(login_with), self.opts.timeout)
        key = self.j.new_key if change in ("add", "unadd") else self.j.old_key
        line, data = self._line(key)
        for target in self.inv.targets:
            if only is not None and target.name not in only:
                continue
            try:
                sess = actions.open_target(conn, target)
            except CheckIncomplete as err:
                raise Failed(f"{target.label}: {err.message}") from None
            try:
                current = auth.read_current(sess)
                edit = (auth.merged(current, line, data) if change == "add"
                        else auth.without(current, data))
                ok, why = auth.apply_change(sess, edit)
            finally:
                sess.close()
            if not ok:
                raise Failed(f"{target.label}: authorized_keys not changed: {why}")
            self.j.hosts[target.name] = change
            self.j.save(self.root)

    def _verify(self, written: str) -> None:
        from kamal_secure.remote import actions

        conn = actions.only_key(self.inv, self.root, self._key(written), self.opts.timeout)
        for target in self.inv.targets:
            ok, why = actions.can_login(conn, target)
            if not ok:
                raise Failed(f"{target.label}: the new key alone cannot log in: {why}")

    def _switch(self, to: str) -> None:
        config = Path(self.j.config_file)
        edit = replace_ssh_key(read_text(config, str(config)), to, str(config))
        if edit.changed:
            tmp = config.with_name(f".{config.name}.kamal-secure-tmp")
            tmp.write_text(edit.after, encoding="utf-8")
            tmp.replace(config)

    def forward(self) -> None:
        j = self.j
        if not j.done("generated"):
            new = self._key(j.new_key)
            if not new.exists():
                keygen.create(new, keygen.comment_for("rotated"))
            j.advance(self.root, "generated")
        try:
            if not j.done("added"):
                self._on_hosts(j.old_key, "add")
                j.advance(self.root, "added")
            if not j.done("verified"):
                self._verify(j.new_key)
                j.advance(self.root, "verified")
        except Failed:
            self.abort()  # before the switch: roll back what was added
            raise
        self._finish()

    def _finish(self) -> None:
        j = self.j
        if not j.done("switched"):
            self._switch(j.new_key)
            j.advance(self.root, "switched")
        if not j.done("removed"):
            self._on_hosts(j.new_key, "remove")
            j.advance(self.root, "removed")
        if not j.done("retired"):
            j.retired_as = retire(self._key(j.old_key), self.opts.shred)
            j.advance(self.root, "retired")
        Journal.remove(self.root)

    def abort(self) -> None:
        j = self.j
        if j.done("removed"):
            raise Failed("too late to abort: the old key is already off the hosts; "
                         "finish with --resume")
        if j.done("switched"):
            self._switch(j.old_key)
        if j.done("generated") and self._key(j.new_key).exists():
            added = {host for host, change in j.hosts.items() if change == "add"}
            self._on_hosts(j.old_key, "unadd", added)
            for path in (self._key(j.new_key),
                         self._key(j.new_key).with_name(self._key(j.new_key).name + ".pub")):
                path.unlink(missing_ok=True)
        Journal.remove(self.root)
