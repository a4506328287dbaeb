"""Entry point: route argv to our own command, the gate, or straight to kamal.

Only ``os``, ``sys`` and :mod:`kamal_secure.kamal` are imported on the
passthrough path; everything else is imported inside the branch that needs it.
"""

import os
import sys

from kamal_secure import __version__
from kamal_secure.errors import EXIT_INCOMPLETE, EXIT_USAGE, KamalSecureError, UsageError
from kamal_secure.kamal import OWN_COMMANDS, Invocation, classify, exec_kamal

HELP = f"""\
kamal-secure {__version__}: a security gate in front of Kamal.

Usage:
  kamal-secure KAMAL-COMMAND [ARGS...]   gate the command, then exec the real kamal
  kamal-secure scan [options]            run the checks without deploying
  kamal-secure rules                     list every rule: id, severity, title
  kamal-secure explain RULE              show a rule's rationale, fix and examples
  kamal-secure keygen [--write-config]   create a dedicated ed25519 deploy key
  kamal-secure authorize [--from CIDR]   put the deploy key in authorized_keys everywhere
  kamal-secure rotate-key [--resume|--abort] a new deploy key everywhere, no downtime
  kamal-secure harden [--allow-from CIDR] the sshd baseline on every host, no lockout
  kamal-secure pin-hosts [--expect FP]   pin host keys so Kamal itself verifies them
  kamal-secure init-policy               write a commented starter .kamal/secure.yml
  kamal-secure snapshot [--approve]      the hosts' security state; --approve records it
                                         in .kamal/secure-state.json (drift watch)
  kamal-secure hooks install|uninstall|status
                                         run the gate from Kamal's own hooks too
  kamal-secure --help | --version

Kamal commands that change servers (deploy, setup, redeploy, rollback, app boot,
server exec, accessory boot, ... and config aliases that resolve to them) run
the gate first; every other kamal command is exec'd untouched. Kamal's options
keep kamal's meaning: -c/--config-file, -d/--destination, -h/--hosts (not
help), -r/--roles, --version=APP_VERSION.

Gate settings come from the environment, never from kamal's argv:
  KAMAL_SECURE_FAIL_ON=SEVERITY  fail at this severity and above (default: high)
  KAMAL_SECURE_SKIP="reason"     break glass: let a blocked deploy through, loudly,
                                 and append it to .kamal/secure-audit.log
  KAMAL_SECURE_KAMAL=/path       the real kamal (default: first kamal on PATH
                                 that is not kamal-secure)

Exit codes:
  0  clean, or findings below the threshold (the gate then runs kamal)
  1  findings at or above the threshold
  2  usage or configuration error (bad YAML, missing file, kamal not found)
  3  a check could not complete (host unreachable, host key unknown or changed)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return route(args)
    except KamalSecureError as err:
        _say_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as err:
        return _crash(err)


def route(args: list[str]) -> int:
    if args in (["--help"], ["-?"]):
        sys.stdout.write(HELP)
        return 0
    if args == ["--version"]:
        sys.stdout.write(f"kamal-secure {__version__}\n")
        return 0
    if args and args[0] in OWN_COMMANDS:
        from kamal_secure.commands import dispatch

        return dispatch(args[0], args[1:])
    inv = Invocation(args)
    kind = classify(inv)
    if kind == "alias":
        from kamal_secure.aliases import resolve_kind

        kind = resolve_kind(inv)
    if kind == "gate":
        from kamal_secure.gate import run_gate

        return run_gate(inv)
    exec_kamal(args)
    return EXIT_USAGE  # not reached: exec replaces this process


def _say_error(err: KamalSecureError) -> None:
    message = err.message.encode("utf-8", "backslashreplace").decode("utf-8")
    sys.stderr.write(f"kamal-secure: error: {message}\n")
    if err.hint:
        sys.stderr.write(f"kamal-secure: hint: {err.hint}\n")


def _crash(err: Exception) -> int:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="kamal-secure-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        traceback.print_exception(err, file=log)
    _say_error(UsageError(f"internal error ({type(err).__name__}); details in {path}"))
    return EXIT_INCOMPLETE
