"""The files Kamal reads beside deploy.yml: secrets files and hooks, as plain data.

Secrets (``kamal_secure.secrets``): ``SECRETS_PATH-common`` plus ``SECRETS_PATH``
or ``SECRETS_PATH.DEST`` with ``-d DEST`` (then the plain file is not read);
``SECRETS_PATH`` is ``secrets_path`` or ``.kamal/secrets``. Hooks: the files in
``hooks_path`` or ``.kamal/hooks``. Everything is read here, once, bounded, so
that rules read data and do no I/O.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from kamal_secure.config.erb import mask
from kamal_secure.errors import ConfigError

MAX_FILE = 256 * 1024
MAX_HOOKS = 64
HOOK_NAMES = frozenset({
    "pre-connect", "pre-build", "pre-deploy", "post-deploy", "docker-setup", "pre-app-boot",
    "post-app-boot", "pre-proxy-reboot", "post-proxy-reboot", "pre-traefik-reboot",
    "post-traefik-reboot",
})
ASSIGN_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*[=:]\s?(.*)$")


@dataclass(frozen=True)
class Entry:
    """One ``NAME=value`` line of a secrets file."""

    name: str
    value: str  # unquoted; never shown in any output
    line: int
    column: int  # where the value starts
    quote: str  # "'" for single-quoted (no expansion), '"' or ""


@dataclass(frozen=True)
class SecretsFile:
    name: str  # as shown in findings
    entries: tuple[Entry, ...]




@dataclass(frozen=True)
class Hook:
    name: str  # as shown in findings
    mode: int
    text: str


def secrets_names(secrets_path: str, destination: str | None) -> list[str]:
    second = f"{secrets_path}.{destination}" if destination else secrets_path
    return [f"{secrets_path}-common", second]


def read_small(path: Path, name: str) -> str:
    """Text of a small side file; undecodable bytes are replaced, NUL refused."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE + 1)
    except OSError as err:
        raise ConfigError(f"{name}: cannot read: {err.strerror}") from None
    if len(raw) > MAX_FILE:
        raise ConfigError(f"{name}: refused: larger than {MAX_FILE // 1024} KiB")
    if b"\x00" in raw:
        raise ConfigError(f"{name}: binary data (NUL byte), not a text file")
    return raw.decode("utf-8", "replace")


def parse_secrets(text: str, name: str) -> SecretsFile:
    """dotenv lines ``NAME=value``; a quoted value may run over several lines (a PEM)."""
    entries = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        entry = _entry(lines[number], number + 1)
        number += 1
        if entry is None:
            continue
        if entry.quote and _unclosed(lines[number - 1], entry):
            more, number = _continuation(lines, number, entry.quote)
            entry = Entry(entry.name, entry.value + "\n" + more, entry.line, entry.column,
                          entry.quote)
        entries.append(entry)
    return SecretsFile(name, tuple(entries))


def _unclosed(raw: str, entry: Entry) -> bool:
    return raw[entry.column - 1:].find(entry.quote) < 0


def _continuation(lines: list[str], number: int, quote: str) -> tuple[str, int]:
    """The rest of a multi-line quoted value, and the index of the line after it."""
    taken = []
    while number < len(lines):
        line = lines[number]
        number += 1
        end = line.find(quote)
        if end >= 0:
            taken.append(line[:end])
            break
        taken.append(line)
    return "\n".join(taken), number


def _entry(raw: str, number: int) -> Entry | None:
    if raw.lstrip().startswith("#"):
        return None
    match = ASSIGN_RE.match(raw)
    if match is None:
        return None
    value, start = match.group(2), match.start(2)
    quote = value[:1] if value[:1] in ("'", '"') else ""
    if quote:
        end = value.find(quote, 1)
        value = value[1:end] if end > 0 else value[1:]
        start += 1
    else:
        value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return Entry(match.group(1), value, number, start + 1, quote)


def load_secrets(root: Path, secrets_path: str, destination: str | None) -> list[SecretsFile]:
    found = []
    for name in secrets_names(secrets_path, destination):
        path = root / name
        if path.is_file():
            found.append(parse_secrets(read_small(path, name), name))
    return found


def dotenv_names(destinations: list[str]) -> list[str]:
    """Kamal 1's env files at the project root: .env, .env.erb, .env.DEST(.erb)."""
    names = [".env", ".env.erb"]
    for destination in destinations:
        names += [f".env.{destination}", f".env.{destination}.erb"]
    return names


def load_dotenv(root: Path, destinations: list[str]) -> list[SecretsFile]:
    """The Kamal 1 env files beside the project; ERB in .erb files is masked, never run."""
    found = []
    for name in dotenv_names(destinations):
        path = root / name
        if path.is_file():
            text = read_small(path, name)
            found.append(parse_secrets(mask(text).text if name.endswith(".erb") else text,
                                       name))
    return found


def load_hooks(root: Path, hooks_path: str) -> list[Hook]:
    folder = root / hooks_path
    if not folder.is_dir():
        return []
    hooks = []
    for path in sorted(folder.iterdir())[:MAX_HOOKS]:
        if path.name not in HOOK_NAMES or not path.is_file():
            continue
        name = f"{hooks_path.rstrip('/')}/{path.name}"
        hooks.append(read_hook(path, name))
    return hooks


def read_hook(path: Path, name: str) -> Hook:
    mode = stat.S_IMODE(path.stat().st_mode)
    text = read_small(path, name)
    return Hook(name, mode, text)
