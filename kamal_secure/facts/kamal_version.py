"""Which Kamal the project uses, and which config keys that Kamal accepts.

Advice must work on the user's Kamal: a key Kamal does not know makes it refuse the whole
config. The version comes from the real kamal the gate would run (its gem path, else
`kamal version`), else the project's Gemfile.lock, else the newest release in
kamal_secure/schema/kamal-versions.json (and we say that we assumed it). Looked up once per process,
and only when a rule's advice depends on it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kamal_secure.errors import UsageError
from kamal_secure.gate.kamal import find_real_kamal
from kamal_secure.resources import schema_text

VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
GEM_DIR_RE = re.compile(r"/kamal-(\d+\.\d+\.\d+)/")
VERSION_RB_RE = re.compile(r"VERSION\s*=\s*[\"'](\d+\.\d+\.\d+)")
LOCK_RE = re.compile(r"^ {4}kamal \((\d+\.\d+\.\d+)[^)]*\)$", re.MULTILINE)
VERSION_TIMEOUT = 30.0

Version = tuple[int, int, int]


def parse(text: str) -> Version | None:
    found = VERSION_RE.search(text)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def show(version: Version) -> str:
    return ".".join(map(str, version))


@cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text("kamal-versions.json"))
    return data


def _version(text: str) -> Version:
    found = parse(text)
    if found is None:
        raise ValueError(f"kamal-versions.json: bad version {text!r}")
    return found


def known_versions() -> list[Version]:
    return [_version(v) for v in _table()["versions"]]


def since(path: str) -> str | None:
    """The first release that accepts ``path`` (``ssh.forward_agent`` -> ``2.12.0``)."""
    ranges = _table()["keys"].get(path)
    return str(ranges[0][0]) if ranges else None


def keys_for(version: Version) -> frozenset[str]:
    """Every config key path Kamal ``version`` accepts (``accessories.*.port`` style)."""
    floor = max([v for v in known_versions() if v <= version] or [known_versions()[0]])
    out = set()
    for path, ranges in _table()["keys"].items():
        for start, end in ranges:
            if _version(start) <= floor and (end is None or floor < _version(end)):
                out.add(path)
    return frozenset(out)


@dataclass(frozen=True)
class KamalVersion:
    version: Version
    source: str  # where the version came from, for the user
    assumed: bool = False

    def accepts(self, path: str) -> bool:
        return path in keys_for(self.version)

    def describe(self) -> str:
        if self.assumed:
            return f"Kamal {show(self.version)}, the newest release (assumed: {self.source})"
        return f"Kamal {show(self.version)} ({self.source})"


def _from_files(path: str) -> str | None:
    """The version named by the real kamal's own files, without running anything."""
    real = os.path.realpath(path)
    found = GEM_DIR_RE.search(real)
    if found:
        return found[1]
    try:
        with Path(real).open("rb") as handle:
            head = handle.read(8192).decode("utf-8", "replace")
    except OSError:
        return None
    found = GEM_DIR_RE.search(head)  # a wrapper that names the gem directory
    if found:
        return found[1]
    prefix = Path(real).parent.parent
    candidates = [*prefix.glob("gems/kamal-*/lib/kamal/version.rb"),
                  *prefix.glob("lib/ruby/gems/*/gems/kamal-*/lib/kamal/version.rb"),
                  *prefix.glob("share/rubygems-integration/all/gems/kamal-*/lib/kamal/version.rb"),
                  prefix / "lib/ruby/vendor_ruby/kamal/version.rb"]
    versions = [v for v in map(_version_rb, candidates) if v]
    return max(versions, key=_version) if versions else None


def _version_rb(path: Path) -> str | None:
    try:
        found = VERSION_RB_RE.search(path.read_text("utf-8", errors="replace"))
    except OSError:
        return None
    return found[1] if found else None


def _ask(path: str, env: dict[str, str], cwd: Path) -> str | None:
    try:
        done = subprocess.run([path, "version"], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=VERSION_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return lines[-1].strip() if lines and VERSION_RE.fullmatch(lines[-1].strip()) else None


def from_kamal(env: dict[str, str], cwd: Path, run: bool = False) -> KamalVersion | None:
    """The real kamal the gate would exec: its files name the version; with ``run`` (never
    on the gate's path: the gate starts kamal only once it passes) `kamal version` is asked."""
    try:
        path = find_real_kamal(env)
    except UsageError:
        return None
    text = _from_files(path)
    if text:
        return KamalVersion(_version(text), f"the kamal at {path}")
    text = _ask(path, env, cwd) if run else None
    return KamalVersion(_version(text), f"`{path} version`") if text else None


def from_lockfile(root: Path) -> KamalVersion | None:
    try:
        text = (root / "Gemfile.lock").read_text("utf-8", errors="replace")
    except OSError:
        return None
    found = LOCK_RE.search(text)
    version = parse(found[1]) if found else None
    return KamalVersion(version, "Gemfile.lock") if version else None


def newest() -> KamalVersion:
    return KamalVersion(known_versions()[-1], "no kamal found and no Gemfile.lock names one",
                        assumed=True)


@cache
def _detect(root: str, path_env: str, explicit: str, run: bool) -> KamalVersion:
    env = dict(os.environ, PATH=path_env)
    if explicit:
        env["KAMAL_SECURE_KAMAL"] = explicit
    return from_kamal(env, Path(root), run) or from_lockfile(Path(root)) or newest()


def detect(root: Path, run: bool = False) -> KamalVersion:
    """The project's Kamal, looked up once per process (per root and PATH). ``run``: commands
    that are not the gate may ask `kamal version` when the files do not say."""
    return _detect(str(root.resolve()), os.environ.get("PATH", ""),
                   os.environ.get("KAMAL_SECURE_KAMAL", ""), run)


# as scripts/kamal_keys_table.py reads Kamal's docs
NAMED = {"accessories", "servers", "aliases"}  # children are names the user picks
FREE = {"env", "labels", "options", "args", "tags", "clear"}  # free-form maps


def config_paths(node: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of a config, names the user picks as ``*`` (the table's spelling)."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        path = (*prefix, str(key))
        yield path
        if str(key) in FREE:
            continue
        if str(key) in NAMED and isinstance(value, dict):
            for child in value.values():
                yield from config_paths(child, (*path, "*"))
            continue
        yield from config_paths(value, path)


def newer_keys(data: object) -> list[tuple[tuple[str, ...], str]]:
    """Config paths (``*`` for names) that some Kamal 2 release does not accept yet."""
    first = known_versions()[0]
    out = []
    for path in config_paths(data):
        found = since(".".join(path))
        if found is not None and _version(found) > first:
            out.append((path, found))
    return out
