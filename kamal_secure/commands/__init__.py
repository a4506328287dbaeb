"""Our own subcommands: one module each, each a function returning an exit code."""

from __future__ import annotations

import argparse
import importlib
from typing import NoReturn

from kamal_secure.errors import UsageError

MODULES = {
    "scan": "kamal_secure.commands.scan",
    "doctor": "kamal_secure.commands.doctor",
    "rules": "kamal_secure.commands.rules",
    "explain": "kamal_secure.commands.explain",
    "init-policy": "kamal_secure.commands.init",
    "keygen": "kamal_secure.commands.keygen",
    "pin-hosts": "kamal_secure.commands.pin_hosts",
    "authorize": "kamal_secure.commands.authorize",
    "harden": "kamal_secure.commands.harden",
    "rotate-key": "kamal_secure.commands.rotate_key",
    "hooks": "kamal_secure.commands.hook_installer",
    "binstub": "kamal_secure.commands.binstub",
    "hook": "kamal_secure.commands.hook_runner",
    "snapshot": "kamal_secure.commands.snapshot",
}


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2, one line) instead of exiting itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"`{self.prog} --help` shows usage")


def dispatch(name: str, args: list[str]) -> int:
    module = importlib.import_module(MODULES[name])
    result: int = module.run(args)
    return result
