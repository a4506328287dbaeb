"""`kamal-secure keygen`: a dedicated ed25519 deploy key, and the ssh section that uses it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from kamal_secure.commands import Parser
from kamal_secure.config.edit import set_ssh_key, snippet
from kamal_secure.config.load import read_text
from kamal_secure.errors import EXIT_CLEAN, ConfigError
from kamal_secure.fileio import write_atomic
from kamal_secure.remediate import keygen


def _parser() -> Parser:
    p = Parser(prog="kamal-secure keygen",
               description="Create a dedicated ed25519 deploy key for Kamal.")
    p.add_argument("--path", default=keygen.DEFAULT_PATH,
                   help=f"where to write the private key (default {keygen.DEFAULT_PATH})")
    p.add_argument("--force", action="store_true",
                   help="replace an existing key; the old pair is kept as a timestamped backup")
    p.add_argument("--passphrase-from-env", metavar="VAR", default=None,
                   help="encrypt the key with the passphrase in this environment variable")
    p.add_argument("--write-config", action="store_true",
                   help="set ssh.keys, keys_only (and forward_agent on Kamal 2.12+) in the "
                   "config file")
    p.add_argument("--user", default=None, metavar="NAME",
                   help="also set ssh.user (an unprivileged deploy user on the hosts)")
    p.add_argument("-c", "--config-file", default="config/deploy.yml")
    p.add_argument("--service", default=None, help="service name for the key comment")
    return p


def _service(config_file: str, given: str | None) -> str:
    if given:
        return given
    from kamal_secure.config.load import load_project

    try:
        value = load_project(config_file).get("service")
    except ConfigError:
        return "app"
    return value if isinstance(value, str) and value.isprintable() else "app"


def run(args: list[str]) -> int:
    opts = _parser().parse_args(args)
    passphrase = keygen.passphrase_from_env(opts.passphrase_from_env)
    comment = keygen.comment_for(_service(opts.config_file, opts.service))
    new = keygen.create(Path(opts.path), comment, passphrase, opts.force)
    out = sys.stdout
    out.write(f"kamal-secure: created {new.path} (ed25519, {new.fingerprint}, {comment})\n")
    for backup in new.backups:
        out.write(f"kamal-secure: the old key is kept as {backup}\n")
    shown = opts.path if opts.path.startswith("~") else str(new.path)
    agent_key = _forward_agent_key(out)
    if opts.write_config:
        _write_config(Path(opts.config_file), shown, agent_key, opts.user)
    else:
        out.write(f"\nAdd this to {opts.config_file} (or rerun with --write-config):\n\n"
                  f"{snippet(shown, agent_key, opts.user)}\n")
    out.write(NEXT_STEPS)
    return EXIT_CLEAN


NEXT_STEPS = """Next, in this order (`kamal-secure doctor` prints the plan for this project):
  1. kamal-secure authorize   adds the key for ssh.user on every host; logs in with a key
                              that works today (your agent, or --identity PATH)
  2. kamal-secure harden      the sshd baseline on every host, without lockout
                              (needs sudo on the host for ssh.user)
  3. kamal-secure pin-hosts   pins the host keys so Kamal itself checks them
then `kamal-secure scan` shows what is left.
"""


def _forward_agent_key(out: TextIO) -> bool:
    """Whether the project's Kamal accepts ssh.forward_agent; says what to do when it does not."""
    from kamal_secure.facts.kamal_version import detect
    from kamal_secure.rules.ssh import no_agent_advice

    kamal = detect(Path.cwd(), run=True)
    if kamal.accepts("ssh.forward_agent"):
        if kamal.assumed:
            out.write(f"kamal-secure: writing forward_agent: false for {kamal.describe()}\n")
        return True
    out.write(f"kamal-secure: not writing forward_agent: {no_agent_advice(kamal)}\n")
    return False


def _write_config(config: Path, key_path: str, agent_key: bool, user: str | None) -> None:
    text = read_text(config, str(config))
    edit = set_ssh_key(text, key_path, str(config), forward_agent=agent_key, user=user)
    if not edit.changed:
        sys.stdout.write(f"kamal-secure: {config} already uses this key\n")
        return
    write_atomic(config, edit.after)  # keeps its mode; through a symlink
    sys.stdout.write(f"kamal-secure: updated {config}:\n{edit.diff(str(config))}")
