"""Entry point: route argv to our own command, the gate, or straight to kamal.

Only ``os``, ``sys`` and :mod:`kamal_secure.gate.kamal` are imported on the
passthrough path; everything else is imported inside the branch that needs it.
"""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from kamal_secure import __version__
from kamal_secure.errors import (
    EXIT_CLEAN,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    KamalSecureError,
    UsageError,
    report_crash,
    say_error,
)
from kamal_secure.gate.kamal import (
    OWN_COMMAND_TABLE,
    OWN_COMMANDS,
    Invocation,
    exec_kamal,
    fast_path,
    forget_secrets,
    hold_ca_secret,
    own_typo,
)

USAGE_COLUMN = 41  # where a command's summary starts in --help


def _usage() -> str:
    """One entry per listed own command, from the one table (gate.kamal.OWN_COMMAND_TABLE)."""
    lines = []
    for word, _, listed in OWN_COMMAND_TABLE:
        if listed is None:
            continue
        usage, summary = listed
        left = f"  kamal-secure {word} {usage}".rstrip()
        indent = "\n" + " " * USAGE_COLUMN
        head = (left + " " * max(1, USAGE_COLUMN - len(left)) if len(left) < USAGE_COLUMN + 4
                else left + indent)  # a long usage line: the summary on the next line
        lines.append(head + summary.replace("\n", indent) + "\n")
    return "".join(lines)


HELP = f"""\
kamal-secure {__version__}: a security gate in front of Kamal.

Usage:
  kamal-secure KAMAL-COMMAND [ARGS...]   gate the command, then exec the real kamal
{_usage()}  kamal-secure --help | --version

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
  KAMAL_SECURE_OFFLINE=1         skip the live host checks (said loudly every time;
                                 recorded in a break-glass entry)
  KAMAL_SECURE_BASELINE=FILE     only findings not in this baseline stop the gate
                                 (see `scan --write-baseline`)
  KAMAL_SECURE_CONFIG=FILE       for the hooks: the config file when it is not
                                 config/deploy.yml
  KAMAL_SECURE_CA_ENV=NAME       certificate mode: the variable NAME holds the SSH CA's
                                 private key (CI); read once, never passed to kamal
  KAMAL_SECURE_CA_AGENT=1        certificate mode: sign with the CA in ssh-agent
Set by kamal-secure for kamal and its hooks (never set them yourself):
  KAMAL_SECURE_EXEC, KAMAL_SECURE_GATE_DIGEST, KAMAL_SECURE_GATE_HOSTS

Exit codes:
""" + "".join(f"  {code}  {meaning.replace(chr(10), chr(10) + ' ' * 5)}\n"
             for code, meaning in EXIT_CODES)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return route(args)
    except _Reported as done:
        return done.code
    except KamalSecureError as err:
        say_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as err:
        return report_crash(err)
    finally:
        forget_secrets()  # the CA key held for this command (hold_ca_secret)


def route(args: list[str]) -> int:
    if args in (["--help"], ["-?"]):
        sys.stdout.write(HELP)
        return EXIT_CLEAN
    if args == ["--version"]:
        sys.stdout.write(f"kamal-secure {__version__}\n")
        return EXIT_CLEAN
    hold_ca_secret()  # nothing this process starts from here on inherits the CA key
    if args and args[0] in OWN_COMMANDS:
        from kamal_secure.commands import dispatch

        return _guarded(dispatch, args[0], args[1:])
    if fast_path(args):
        exec_kamal(args)
        return EXIT_USAGE  # not reached: exec replaces this process
    typo = own_typo(args[0])
    if typo:
        from kamal_secure.gate.aliases import resolve_kind

        if _guarded(resolve_kind, Invocation(args)) == "pass":  # no alias of that name
            raise UsageError(f"unknown command {args[0]!r}: did you mean `{typo}`? "
                             "(kamal was not started)",
                             hint=f"`kamal-secure {typo} --help`; kamal's own commands: "
                             "`kamal help`")
    from kamal_secure.gate.oracle import run_resolved

    return _guarded(run_resolved, args)


class _Reported(Exception):
    """An error already reported inside the output guard; carries only the exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


T = TypeVar("T")


def _guarded(function: Callable[..., T], *args: Any) -> T:
    """Run one of our own paths (never the passthrough) with stdout/stderr guarded: every
    control character escaped; errors reported redacted and escaped too."""
    from kamal_secure.report.safe import guard_output, shown

    with guard_output():
        try:
            return function(*args)
        except KamalSecureError as err:
            say_error(err, shown)
            raise _Reported(err.exit_code) from None
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as err:
            raise _Reported(report_crash(err)) from None


