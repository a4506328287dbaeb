"""Load a Kamal project the way Kamal resolves it, without running anything.

``-c`` file (default ``config/deploy.yml``), deep-merged with
``deploy.DEST.yml`` for ``-d DEST`` (hashes merge, arrays and scalars are
replaced), each file ERB-masked then safely parsed with positions kept, the way
Psych reads it (merge keys in document order, top-level ``:symbol`` keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kamal_secure.config import erb, files, yamlsafe
from kamal_secure.errors import ConfigError

MAX_BYTES = 1024 * 1024  # real deploy.yml files are a few KiB


class EmptyConfig(ConfigError):
    """The merged config is empty (`--- {}`): usable only through a destination."""


@dataclass(frozen=True)
class Source:
    """One parsed file: its display name, masked text and what the loader saw."""

    path: Path
    name: str  # as shown in findings: relative to the project root when possible
    masked: erb.Masked
    loaded: yamlsafe.Loaded


@dataclass(frozen=True)
class Origin:
    file: str
    line: int
    column: int


@dataclass
class Project:
    root: Path
    config_path: Path
    destination: str | None
    data: dict[str, Any]
    sources: list[Source]
    origins: dict[yamlsafe.Path, Origin] = field(default_factory=dict)
    secrets: list[files.SecretsFile] = field(default_factory=list)
    hooks: list[files.Hook] = field(default_factory=list)
    destination_files: list[str] = field(default_factory=list)  # deploy.*.yml beside -c
    dotenv: list[files.SecretsFile] = field(default_factory=list)  # Kamal 1 .env, .env.erb
    destinations: list[str] = field(default_factory=list)  # DEST of each deploy.DEST.yml

    def deployable_alone(self) -> bool:
        """Can plain `kamal deploy` (no -d) use this config? Not without hosts or with
        require_destination: true."""
        return bool(self.get("servers")) and self.get("require_destination") is not True

    def get(self, *path: str | int, default: Any = None) -> Any:
        node: Any = self.data
        for part in path:
            if not _has(node, part):
                return default
            node = node[part]
        return node

    def origin(self, path: yamlsafe.Path) -> Origin:
        """Where a value was set; the nearest parent that has a position otherwise. A key set
        nowhere (a missing ``ssh:``) is a fact about the base file, never a destination's."""
        for end in range(len(path), 0, -1):
            found = self.origins.get(path[:end])
            if found is not None:
                return found
        if not self.sources:
            return Origin(str(self.config_path), 1, 1)
        base = self.sources[0]
        mark = base.loaded.marks.get(())
        return Origin(base.name, mark.line, mark.column) if mark else Origin(base.name, 1, 1)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def display_name(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_text(path: Path, name: str, max_bytes: int = MAX_BYTES, kind: str = "YAML") -> str:
    try:
        if path.is_dir():
            raise ConfigError(f"{name}: is a directory, not a file")
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found") from None
    except PermissionError:
        raise ConfigError(f"{name}: permission denied") from None
    except OSError as err:
        raise ConfigError(f"{name}: cannot read: {err.strerror}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{name}: refused: larger than {max_bytes // 1024} KiB")
    if b"\x00" in raw:
        raise ConfigError(f"{name}: binary data (NUL byte), not a {kind} file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: not valid UTF-8 (byte {err.start})") from None


def read_json_object(path: Path, name: str, what: str, max_bytes: int = MAX_BYTES
                     ) -> dict[str, Any]:
    """A JSON file whose top level must be an object: ConfigError (exit 2) naming the file
    and the reason otherwise (missing, unreadable, binary, empty, truncated, wrong type)."""
    import json

    text = read_text(path, name, max_bytes, kind="JSON")
    if not text.strip():
        raise ConfigError(f"{name}: empty, not {what}")
    try:
        data = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{name}:{err.lineno}:{err.colno}: not {what}: invalid JSON "
                          f"({err.msg})") from None
    except RecursionError:
        raise ConfigError(f"{name}: not {what}: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: not {what}: the top level is {json_type(data)}, "
                          "expected an object")
    return data


def json_type(value: Any) -> str:
    """The JSON/YAML name of a value's type, for messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def parse_file(path: Path, root: Path) -> Source:
    name = display_name(path, root)
    text = read_text(path, name)
    if text.startswith("\ufeff"):
        text = text[1:]
    masked = erb.mask(text)
    loaded = yamlsafe.load(masked.text, name, ruby=True)
    if loaded.data is None:
        loaded.data = {}
    if not isinstance(loaded.data, dict):
        kind = type(loaded.data).__name__
        raise ConfigError(f"{name}:1: the top level must be a mapping of keys, not a {kind}")
    return Source(path, name, masked, loaded)


def destination_file(config_path: Path, destination: str) -> Path:
    """Kamal's ``config_file.sub_ext(".#{destination}.yml")``."""
    return config_path.with_suffix(f".{destination}.yml")


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return over


def _record(origins: dict[yamlsafe.Path, Origin], source: Source) -> None:
    """Positions of ``source`` override the earlier file's wherever ``source`` set a value."""
    for path in source.loaded.marks:
        if path and _replaces(path, source.loaded.data):
            stale = [p for p in origins if p[: len(path)] == path]
            for p in stale:
                del origins[p]
    for path, mark in source.loaded.marks.items():
        origins[path] = Origin(source.name, mark.line, mark.column)


def _replaces(path: yamlsafe.Path, own: Any) -> bool:
    node = own
    for part in path:
        node = node[part] if _has(node, part) else None
    return not isinstance(node, dict)


_ONCE: ContextVar[dict[tuple[str, str | None, Path], Project] | None] = \
    ContextVar("kamal_secure_projects", default=None)


@contextmanager
def loaded_once() -> Iterator[None]:
    """Within this block (one command that only reads), each project is loaded once:
    asking again for the same config, destination and root gives the same Project."""
    token = _ONCE.set({})
    try:
        yield
    finally:
        _ONCE.reset(token)


def load_project(
    config_file: str = "config/deploy.yml",
    destination: str | None = None,
    root: Path | None = None,
) -> Project:
    root = (root or Path.cwd()).resolve()
    cache = _ONCE.get()
    key = (config_file, destination, root)
    if cache is not None and key in cache:
        return cache[key]
    project = _load(config_file, destination, root)
    if cache is not None:
        cache[key] = project
    return project


def _load(config_file: str, destination: str | None, root: Path) -> Project:
    config_path = Path(config_file).expanduser()
    if not config_path.is_absolute():
        config_path = root / config_path
    if destination is not None and ("/" in destination or destination in ("", ".", "..")):
        raise ConfigError(f"destination {destination!r} is not a plain name")
    files = [config_path]
    if destination:
        files.append(destination_file(config_path, destination))
    sources: list[Source] = []
    data: dict[str, Any] = {}
    origins: dict[yamlsafe.Path, Origin] = {}
    for path in files:
        if path != config_path and not path.is_file():
            name = display_name(path, root)
            raise ConfigError(f"destination {destination!r}: {name} not found "
                              "(Kamal stops here too)")
        source = parse_file(path, root)
        sources.append(source)
        data = _merge(data, source.loaded.data)
        _record(origins, source)
    if not data:
        merged = f" (merged with {sources[-1].name})" if destination else ""
        raise EmptyConfig(f"{sources[0].name}:1: the config is empty{merged}: Kamal needs at "
                          "least service and image")
    project = Project(root, config_path, destination, data, sources, origins)
    _side_files(project)
    return project


def destination_names(config_path: Path) -> list[str]:
    """DEST of every ``deploy.DEST.yml`` beside ``config_path``."""
    stem, suffix = config_path.stem, config_path.suffix
    siblings = sorted(config_path.parent.glob(f"{stem}.*{suffix}"))
    names = [p.name[len(stem) + 1: -len(suffix)] for p in siblings if p.is_file()]
    return [n for n in names if n and "/" not in n]


def _setting(data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) and value and not erb.is_dynamic(value) else default


def _side_files(project: Project) -> None:
    """Secrets files, hooks and sibling destination files, read once for the rules."""
    root, data = project.root, project.data
    secrets_path = _setting(data, "secrets_path", ".kamal/secrets")
    project.secrets = files.load_secrets(root, secrets_path, project.destination)
    project.hooks = files.load_hooks(root, _setting(data, "hooks_path", ".kamal/hooks"))
    config = project.config_path
    siblings = sorted(config.parent.glob(f"{config.stem}.*{config.suffix}"))
    project.destination_files = [display_name(p, root) for p in siblings if p.is_file()]
    project.destinations = destination_names(config)
    project.dotenv = files.load_dotenv(root, project.destinations)
