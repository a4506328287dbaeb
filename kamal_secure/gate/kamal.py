"""What we know about the kamal command line, and how to hand over to the real kamal.

This module sits on the passthrough path: it imports nothing but ``os`` and
``sys`` so that ``kamal-secure version`` costs little more than starting Python.
"""

import os
import sys
from collections.abc import MutableMapping

from kamal_secure.errors import UsageError

# Kamal 2 class options (lib/kamal/cli/base.rb) that take a value.
VALUE_OPTIONS = {
    "-c": "config_file",
    "--config-file": "config_file",
    "-d": "destination",
    "--destination": "destination",
    "-h": "hosts",
    "--hosts": "hosts",
    "-r": "roles",
    "--roles": "roles",
    "--version": "version",
    "--lock-wait-timeout": "lock_wait_timeout",
    "--lock-wait-interval": "lock_wait_interval",
}
SHORT_VALUE_LETTERS = {"c", "d", "h", "r"}

# Read-only or local-only commands: exec'd at once. Anything else under a known
# command group is gated (fail closed: a new kamal subcommand is gated until listed).
UNGATED_TOP = {"details", "audit", "config", "docs", "init", "version", "help", "secrets"}
UNGATED_SUB = {
    "app": {"details", "containers", "images", "logs", "version", "help"},
    "accessory": {"details", "logs", "help"},
    "proxy": {"details", "logs", "help"},
    "lock": {"status", "help"},
    "build": {"details", "create", "remove", "dev", "help"},
    "prune": {"help"},
    "registry": {"help"},
    "server": {"help"},
}
GATED_TOP = {"setup", "deploy", "redeploy", "rollback", "remove", "upgrade"}
GROUPS = set(UNGATED_SUB)
KNOWN_TOP = UNGATED_TOP | GATED_TOP | GROUPS

# Our own commands, the one table (none of them is a kamal command): the word, the module
# under kamal_secure.commands that runs it, and its usage and summary in --help (None: not
# listed there; `hook` is called by the hook scripts). commands.MODULES and cli.HELP are
# made from it.
OWN_COMMAND_TABLE: tuple[tuple[str, str, tuple[str, str] | None], ...] = (
    ("scan", "scan", ("[options]", "run the checks without deploying (connects to\n"
                                   "every host unless --offline)")),
    ("doctor", "doctor", ("[--offline]", "the ordered commands that would make this\n"
                                         "project pass, with what each needs")),
    ("rules", "rules", ("", "list every rule: id, severity, title")),
    ("explain", "explain", ("RULE", "show a rule's rationale, fix and examples")),
    ("keygen", "keygen", ("[--write-config]", "create a dedicated ed25519 deploy key")),
    ("authorize", "authorize", ("[--from CIDR]",
                                "put the deploy key in authorized_keys everywhere")),
    ("rotate-key", "rotate_key", ("[--resume|--abort]",
                                  "a new deploy key everywhere, no downtime")),
    ("harden", "harden", ("[--allow-from CIDR]", "the sshd baseline on every host, no lockout")),
    ("pin-hosts", "pin_hosts", ("[--expect FP]", "pin host keys so Kamal itself verifies them")),
    ("ca", "ca", ("init|rotate", "init: create the SSH certificate authority's key\n"
                                 "(short-lived deploy certificates); rotate: a new CA\n"
                                 "on every host, then the old one removed")),
    ("init-policy", "init", ("", "write a commented starter .kamal/secure.yml")),
    ("snapshot", "snapshot", ("[--approve]", "the hosts' security state; --approve records it\n"
                                             "in .kamal/secure-state.json (drift watch)")),
    ("hooks", "hook_installer", ("install|uninstall|status",
                                 "run the gate from Kamal's own hooks too")),
    ("binstub", "binstub", ("install|uninstall|status",
                            "route Rails' bin/kamal through the gate")),
    ("hook", "hook_runner", None),
)
OWN_COMMANDS = tuple(word for word, _, _ in OWN_COMMAND_TABLE)

EXEC_MARKER = "KAMAL_SECURE_EXEC"
SHIM_MARKER = b"kamal-secure-shim"
MAX_ALIAS_DEPTH = 8


class Invocation:
    """A kamal command line as kamal's thor parser would see it."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.options: dict[str, str] = {}
        self.words: list[str] = []
        self.after_dashdash = False
        self._parse()

    def _parse(self) -> None:
        i = 0
        while i < len(self.args):
            i = self._take(i)

    def _take(self, i: int) -> int:
        arg = self.args[i]
        if self.after_dashdash or arg == "-" or not arg.startswith("-"):
            self.words.append(arg)
            return i + 1
        if arg == "--":
            self.after_dashdash = True
            return i + 1
        name, eq, value = arg.partition("=")
        if name.startswith("--"):
            name = name.replace("_", "-")
        elif len(name) > 2 and not eq:
            return self._take_squashed(i, arg)
        key = VALUE_OPTIONS.get(name)
        if key is None:
            return i + 1
        if eq:
            self.options[key] = value
            return i + 1
        if i + 1 < len(self.args):
            self.options[key] = self.args[i + 1]
            return i + 2
        self.options[key] = ""
        return i + 1

    def _take_squashed(self, i: int, arg: str) -> int:
        """Thor expands ``-vq`` into ``-v -q``; a value letter takes the next argument."""
        letters = arg[1:]
        if not letters.isalpha():
            return i + 1
        for letter in letters:
            if letter in SHORT_VALUE_LETTERS:
                return self._take_value_letter(i, letter)
        return i + 1

    def _take_value_letter(self, i: int, letter: str) -> int:
        key = VALUE_OPTIONS["-" + letter]
        if i + 1 < len(self.args):
            self.options[key] = self.args[i + 1]
            return i + 2
        self.options[key] = ""
        return i + 1

    @property
    def command(self) -> str | None:
        return self.words[0] if self.words else None

    @property
    def subcommand(self) -> str | None:
        return self.words[1] if len(self.words) > 1 else None

    @property
    def config_file(self) -> str:
        return self.options.get("config_file") or "config/deploy.yml"

    @property
    def destination(self) -> str | None:
        return self.options.get("destination") or None

    @property
    def hosts(self) -> list[str]:
        return [h for h in self.options.get("hosts", "").split(",") if h]

    @property
    def roles(self) -> list[str]:
        return [r for r in self.options.get("roles", "").split(",") if r]


def classify(inv: Invocation) -> str:
    """Return ``"gate"``, ``"pass"`` or ``"alias"`` (an unknown word: maybe a config alias)."""
    command = inv.command
    if command is None or command in UNGATED_TOP:
        return "pass"
    if command in GATED_TOP:
        return "gate"
    if command in GROUPS:
        sub = inv.subcommand
        if sub is None or sub in UNGATED_SUB[command]:
            return "pass"
        return "gate"
    return "alias"


def own_typo(word: str | None) -> str | None:
    """Our command that ``word`` looks like a typo of (``scna`` -> ``scan``), or None.

    A word that is a kamal command, or a prefix of one (Thor runs ``kamal dep`` as
    ``deploy``), is never a typo of ours: it goes to kamal."""
    if not word or word.startswith("-") or any(c.startswith(word) for c in KNOWN_TOP):
        return None
    import difflib

    close = difflib.get_close_matches(word, OWN_COMMANDS, n=1, cutoff=0.7)
    starts = [c for c in OWN_COMMANDS if c.startswith(word) and len(word) >= 3]
    return close[0] if close else (starts[0] if len(starts) == 1 else None)


def fast_path(args: list[str]) -> bool:
    """An exact, known read-only form: exec'd byte-exact with no Ruby resolution.

    Only argv whose first words are spelled exactly as a read-only command (no option
    before them, no prefix, no alias) qualifies; everything else is resolved by Kamal."""
    if not args:
        return True
    first = args[0]
    if first in UNGATED_TOP:
        return True
    if first in GROUPS and len(args) > 1:
        return args[1] in UNGATED_SUB[first]
    return False


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(4096)
    except OSError:
        return b""


def is_kamal_secure(path: str) -> bool:
    """True when ``path`` is our shim or our console script rather than the real kamal."""
    head = _head(os.path.realpath(path))
    return SHIM_MARKER in head or b"kamal_secure" in head


def _recursed_paths(env: dict[str, str]) -> set[str]:
    """Paths that, exec'd by an earlier kamal-secure in this same process, turned out to be us."""
    marker = env.get(EXEC_MARKER, "")
    pid, _, paths = marker.partition(":")
    if pid != str(os.getpid()):
        return set()
    return {p for p in paths.split(os.pathsep) if p}


def find_real_kamal(env: dict[str, str]) -> str:
    """The real kamal: ``KAMAL_SECURE_KAMAL``, else the first kamal on PATH that is not us."""
    skip = _recursed_paths(env)
    explicit = env.get("KAMAL_SECURE_KAMAL")
    if explicit:
        return _check_explicit(explicit, skip)
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", "kamal")
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            continue
        if os.path.realpath(candidate) in skip or is_kamal_secure(candidate):
            continue
        return candidate
    raise UsageError(
        "the real kamal was not found on PATH (only kamal-secure itself)",
        hint="install Kamal (gem install kamal) or set KAMAL_SECURE_KAMAL=/path/to/kamal",
    )


def _check_explicit(path: str, skip: set[str]) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UsageError(f"KAMAL_SECURE_KAMAL={path} is not an executable file")
    if os.path.realpath(path) in skip or is_kamal_secure(path):
        raise UsageError(
            f"KAMAL_SECURE_KAMAL={path} is kamal-secure itself, not the real kamal",
            hint="point KAMAL_SECURE_KAMAL at Kamal's own executable",
        )
    return path


# certificate mode (gate/certificate.py): the name of the variable holding the CA key
CA_ENV = "KAMAL_SECURE_CA_ENV"
CA_AGENT = "KAMAL_SECURE_CA_AGENT"  # "1": the ssh-agent signs
_HELD: dict[str, bytes] = {}  # CA keys taken out of the environment: variable -> key text


def take_secret(name: str, environ: MutableMapping[str, str] | None = None) -> bytes | None:
    """The CA private key text in the variable ``name``, taken out of ``environ`` and of
    this process's environment (no child started later inherits it: Kamal, the probe of
    a wrapper, a ProxyCommand) and held in this process (and the verdict process forked
    from it); None when it was never set or empty."""
    value = os.environ.pop(name, None)
    if environ is not None and environ is not os.environ:
        value = environ.pop(name, None) or value
    if value:
        _HELD[name] = value.encode()
    return _HELD.get(name)


def forget_secrets() -> None:
    """Drop every CA key this process holds (its command is done; tests between cases)."""
    _HELD.clear()


def hold_ca_secret() -> None:
    """Take certificate mode's CA key (``KAMAL_SECURE_CA_ENV`` names its variable) out of
    the environment before anything is started; the name stays (it says which mode)."""
    named = os.environ.get(CA_ENV)
    if named and "=" not in named:
        take_secret(named)


def exec_kamal(args: list[str], env: dict[str, str] | None = None,
               path: str | None = None) -> None:
    """Replace this process with the real kamal, argv exactly as typed. Never returns."""
    environ = dict(os.environ if env is None else env)
    named = environ.pop(CA_ENV, None)  # certificate mode's CA secret is never Kamal's
    if named:
        environ.pop(named, None)
    path = path or find_real_kamal(environ)
    seen = _recursed_paths(environ) | {os.path.realpath(path)}
    environ[EXEC_MARKER] = f"{os.getpid()}:{os.pathsep.join(sorted(seen))}"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, [path, *args], environ)
