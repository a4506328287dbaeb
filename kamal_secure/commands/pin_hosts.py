"""`kamal-secure pin-hosts`: make Kamal itself verify every host key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kamal_secure.commands import Parser
from kamal_secure.commands.fleet_cmd import CONCURRENCY, add_target_options, confirmed, targets
from kamal_secure.config.edit import set_ssh_config
from kamal_secure.config.load import read_text
from kamal_secure.errors import (
    EXIT_CLEAN,
    EXIT_DECLINED,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    UsageError,
)
from kamal_secure.fileio import write_atomic
from kamal_secure.remediate import pin_hosts as pin


def _parser() -> Parser:
    p = Parser(prog="kamal-secure pin-hosts", add_help=False,
               description="Pin every host's key in .kamal/known_hosts and make Kamal strict.")
    add_target_options(p, "show what would change; write nothing")
    p.add_argument("--expect", action="append", default=[], metavar="SHA256:...",
                   help="a fingerprint the hosts may show (repeat); others are refused")
    p.add_argument("--expect-file", type=Path, default=None,
                   help="fingerprints, one per line (ssh-keygen -lf output works)")
    p.add_argument("--replace", action="append", default=[], metavar="HOST",
                   help="accept a changed key for this host (after checking it on its console)")
    return p


def _expected(opts_expect: list[str], path: Path | None) -> set[str]:
    found = set(opts_expect)
    if path is not None:
        for line in read_text(path, str(path)).splitlines():
            found.update(w for w in line.split() if w.startswith("SHA256:"))
    return found


def _collect(opts: argparse.Namespace) -> tuple[list[pin.Seen], list[str]]:
    from kamal_secure.errors import CheckIncomplete
    from kamal_secure.remote import actions, session
    from kamal_secure.remote.each_host import for_each_host
    from kamal_secure.remote.scan_keys import fetch_for

    project, inventory = targets(opts)
    keys = session.load_login_keys(inventory.ssh) if inventory.ssh.proxy else []
    conn = actions.connector(inventory, project.root, keys, opts.timeout)
    todo = [t for t in inventory.targets if not t.dynamic]
    outcomes = iter(for_each_host(todo, lambda t: fetch_for(conn, t.name), CONCURRENCY,
                                  name=lambda t: t.label, title="reading host keys"))
    seen, failed = [], []
    for target in inventory.targets:
        if target.dynamic:
            failed.append(f"{target.label}: the host name comes from ERB")
            continue
        try:
            name, key = next(outcomes).result()
        except CheckIncomplete as err:
            failed.append(f"{target.name}: {err.message}")
            continue
        seen.append(pin.Seen(name, key.key_type, key.base64, key.fingerprint))
    return seen, failed


def _require_ssh_config_key() -> None:
    """pin-hosts makes Kamal strict through ssh.config, which Kamal has only since 2.1."""
    from kamal_secure.facts.kamal_version import detect, since

    kamal = detect(Path.cwd(), run=True)
    if not kamal.accepts("ssh.config"):
        raise UsageError(
            f"{kamal.describe()} has no ssh.config (added in Kamal {since('ssh.config')}): "
            "pin-hosts cannot make it check host keys, and writing the key would make Kamal "
            "refuse the config",
            hint=f"upgrade Kamal to {since('ssh.config')} or later; until then Kamal trusts "
            "host keys on first use (keep ~/.ssh/known_hosts entries you verified)")


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    _require_ssh_config_key()
    expect = _expected(opts.expect, opts.expect_file)
    seen, failed = _collect(opts)
    result = pin.plan(seen, pin.read_pinned(Path.cwd()), expect, set(opts.replace))
    _show(result, failed)
    if result.changed or result.unexpected:
        sys.stderr.write("kamal-secure: refused: nothing written\n")
        return EXIT_FINDINGS
    if failed:
        sys.stderr.write("kamal-secure: some hosts could not be reached: nothing written\n")
        return EXIT_INCOMPLETE
    config_edit = set_ssh_config(read_text(Path(opts.config_file), opts.config_file),
                                 str(pin.SSH_CONFIG), opts.config_file)
    if opts.dry_run:
        sys.stdout.write("dry run: nothing written\n" + config_edit.diff(opts.config_file))
        return EXIT_CLEAN
    if result.added and not confirmed(opts.yes, f"Pin {len(result.added)} new host key(s)?"):
        return EXIT_DECLINED
    pin.write(Path.cwd(), result)
    if config_edit.changed:
        write_atomic(Path(opts.config_file), config_edit.after)  # keeps its mode
        sys.stdout.write(config_edit.diff(opts.config_file))
    sys.stdout.write(f"kamal-secure: {len(result.lines)} host key(s) pinned in "
                     f"{pin.KNOWN_HOSTS}; Kamal now refuses unknown or changed host keys\n")
    return EXIT_CLEAN


def _show(result: pin.Plan, failed: list[str]) -> None:
    for host in result.added:
        sys.stdout.write(f"new       {host.name}  {host.key_type} {host.fingerprint}\n")
    for host in result.unchanged:
        sys.stdout.write(f"pinned    {host.name}  {host.key_type} {host.fingerprint}\n")
    for host, old in result.changed:
        sys.stderr.write(f"CHANGED   {host.name}: pinned {old.split()[1]} key differs; the "
                         f"host now shows {host.key_type} {host.fingerprint} "
                         f"(check it on the console, then --replace {host.name})\n")
    for host in result.unexpected:
        sys.stderr.write(f"UNEXPECTED {host.name}: {host.key_type} {host.fingerprint} is not "
                         "among the expected fingerprints\n")
    for line in failed:
        sys.stderr.write(f"UNREACHED {line}\n")

