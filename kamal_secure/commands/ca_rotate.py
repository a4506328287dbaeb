"""`kamal-secure ca rotate`: a new CA trusted on every host, proven, then the old one removed.

The protocol and its rules are in :mod:`kamal_secure.remediate.ca_rotate`, its steps in
:mod:`kamal_secure.remediate.ca_rotate_steps`; this module reads the options and the
policy, plans, asks, and prints what holds at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamal_secure.commands.fleet_cmd import add_target_options, confirmed, targets
from kamal_secure.commands.journalled import check_progress, drive
from kamal_secure.errors import EXIT_CLEAN, EXIT_DECLINED, KamalSecureError, UsageError
from kamal_secure.remediate.ca_rotate import CaJournal
from kamal_secure.remediate.ca_rotate_steps import Signer, Steps

if TYPE_CHECKING:
    from kamal_secure.remediate.certs import CaSource


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
    from kamal_secure.gate.run import account_name
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
    signer = Signer(Path(inventory.ssh.keys[0]).expanduser(), inventory.ssh.user,
                    keygen.passphrase_from_env(opts.passphrase_from_env), account_name(),
                    lambda: _named_source(root))
    try:
        named = signer.named()  # first: a CA in a variable can be read only once
    except KamalSecureError:
        if not opts.abort:  # an abort signs with the journal's CAs, not the named one
            raise
        named = None
    if journal is None:
        journal = _start(root, named, opts.path)
        if opts.passphrase_from_env and journal.source != "agent":
            raise UsageError("--passphrase-from-env: the gate cannot decrypt a CA in a file "
                             "or in a variable, so the new CA could not sign any deploy",
                             hint="keep an encrypted CA in an ssh-agent "
                             "(KAMAL_SECURE_CA_AGENT=1), or rotate without a passphrase")
        sys.stdout.write(f"would trust a new CA, {journal.new_ca}, beside the old one "
                         f"({_fingerprint(journal.old_line)}, {journal.source}) on "
                         f"{len(inventory.targets)} host(s), prove it, then remove the old "
                         "one\n")
        if opts.dry_run:
            return EXIT_CLEAN
        if not confirmed(opts.yes, "Rotate the CA?"):
            return EXIT_DECLINED
        journal.save(root)
    steps = Steps(journal, inventory, root, signer, opts.timeout, lambda: _policy_ca(root))
    return _drive(steps, opts.abort)


def _policy_ca(root: Path) -> Path | None:
    """The policy's certificates.ca, read anew."""
    from kamal_secure.policy.file import policy_for

    return policy_for(root).certificates.ca


def _named_source(root: Path) -> CaSource | None:
    """The CA certificate mode names now, as the gate decides it."""
    from kamal_secure.gate.certificate import ca_source

    return ca_source(_policy_ca(root), os.environ)


def _drive(steps: Steps, abort: bool) -> int:
    return drive(steps, steps.forward, abort,
                 lambda: "CA rotation aborted: every host the rotation changed trusts the "
                 "old CA again (proven with its certificate), the new CA is removed from "
                 "the hosts and its key moved aside",
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
    from kamal_secure.remediate import ca
    from kamal_secure.remediate.rotate import new_key_path

    policy_ca = _policy_ca(root)
    old = Path(policy_ca or DEFAULT_CA_PATH).expanduser()
    choice = ca_choice(policy_ca, os.environ)  # as certificate mode decides it
    env_name = choice.env if choice is not None else None
    source = ("default" if choice is None else "env" if choice.env
              else "agent" if choice.agent else "policy")
    if named is None:  # nothing named: the default file, when it is there
        named = Signer.line_of(old)
    new = Path(path).expanduser() if path else Path(new_key_path(str(old)))
    ca.check_path(new, cwd=root)  # before anything is journalled
    return CaJournal(str(old), named, str(new.absolute()), source, env_name or None)
