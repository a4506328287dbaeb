"""Our own subcommands: one module each, each a function returning an exit code."""

from __future__ import annotations

import argparse
import importlib
from typing import NoReturn

from kamal_secure.errors import UsageError
from kamal_secure.gate.kamal import OWN_COMMAND_TABLE

MODULES = {word: f"kamal_secure.commands.{module}" for word, module, _ in OWN_COMMAND_TABLE}


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2, one line) instead of exiting itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"`{self.prog} --help` shows usage")


def dispatch(name: str, args: list[str]) -> int:
    module = importlib.import_module(MODULES[name])
    result: int = module.run(args)
    return result
