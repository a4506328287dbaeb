"""`kamal-secure ca init`: create the SSH certificate authority's key; `ca rotate`: replace
it on every host (kamal_secure/commands/ca_rotate.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from kamal_secure.commands import Parser, ca_rotate
from kamal_secure.errors import EXIT_CLEAN
from kamal_secure.remediate import ca, keygen


def _parser() -> Parser:
    p = Parser(prog="kamal-secure ca",
               description="The SSH certificate authority that signs short-lived deploy "
               "certificates.")
    sub = p.add_subparsers(dest="action", required=True, metavar="init|rotate")
    init = sub.add_parser("init", help="create the CA's ed25519 key",
                          description="Create the CA's ed25519 key (outside the repository).")
    init.add_argument("--path", default=ca.DEFAULT_PATH,
                      help=f"where to write the CA private key (default {ca.DEFAULT_PATH}); "
                      "a path inside the current git repository is refused without --force")
    init.add_argument("--force", action="store_true",
                      help="replace an existing CA key (the old pair is kept as a timestamped "
                      "backup), or write inside the git repository")
    init.add_argument("--passphrase-from-env", metavar="VAR", default=None,
                      help="encrypt the key with the passphrase in this environment variable")
    ca_rotate.add_parser(sub)
    return p


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    if opts.action == "rotate":
        return ca_rotate.run(opts)
    passphrase = keygen.passphrase_from_env(opts.passphrase_from_env)
    new = ca.init(Path(opts.path), passphrase, opts.force)
    public = new.path.with_name(new.path.name + ".pub").read_text().strip()
    out = sys.stdout
    out.write(f"kamal-secure: created the CA key {new.path} (ed25519, {new.fingerprint})\n")
    for backup in new.backups:
        out.write(f"kamal-secure: the old key is kept as {backup}\n")
    out.write(f"\nThe CA's public key (hosts will trust it as TrustedUserCAKeys):\n{public}\n"
              f"Fingerprint: {new.fingerprint}\n")
    return EXIT_CLEAN
