"""Install our Kamal hooks, chaining to any hook already there; uninstall restores it exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kamal_secure.errors import UsageError
from kamal_secure.fileio import write_atomic
from kamal_secure.resources import hook_template

HOOKS = ("pre-connect", "pre-deploy")
MARKER = b"kamal-secure-hook"
ORIGINAL_SUFFIX = ".kamal-secure-orig"


@dataclass(frozen=True)
class HookState:
    name: str
    path: Path
    ours: bool
    current: bool  # ours and identical to the shipped template
    original: Path | None  # the hook we replaced and chain to


def template(name: str) -> bytes:
    return hook_template(name)


def _is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return MARKER in handle.read(512)
    except OSError:
        return False


def state(directory: Path, name: str) -> HookState:
    path = directory / name
    original = path.with_name(name + ORIGINAL_SUFFIX)
    ours = path.is_file() and _is_ours(path)
    current = ours and path.read_bytes() == template(name)
    return HookState(name, path, ours, current, original if original.exists() else None)


def _write_template(path: Path, name: str) -> None:
    write_atomic(path, template(name), 0o755)


def install(directory: Path) -> list[str]:
    """Install (or refresh) our hooks; returns one line per hook saying what happened."""
    directory.mkdir(parents=True, exist_ok=True)
    said = []
    for name in HOOKS:
        now = state(directory, name)
        if now.current:
            said.append(f"{name}: already installed")
            continue
        if now.ours:
            _write_template(now.path, name)
            said.append(f"{name}: updated")
            continue
        if now.path.exists() or now.path.is_symlink():
            if now.original is not None:
                raise UsageError(f"{now.path} is not ours but {now.original.name} exists too",
                                 hint="move one of them away, then run `hooks install` again")
            now.path.rename(now.path.with_name(name + ORIGINAL_SUFFIX))
            _write_template(now.path, name)
            said.append(f"{name}: installed; your hook runs after it ({name}{ORIGINAL_SUFFIX})")
            continue
        _write_template(now.path, name)
        said.append(f"{name}: installed")
    return said


def uninstall(directory: Path) -> list[str]:
    said = []
    for name in HOOKS:
        now = state(directory, name)
        if not now.ours:
            said.append(f"{name}: not ours, left alone" if now.path.exists()
                        else f"{name}: not installed")
            continue
        now.path.unlink()
        if now.original is not None:
            now.original.rename(now.path)
            said.append(f"{name}: removed; your original hook is back")
        else:
            said.append(f"{name}: removed")
    return said


def status(directory: Path) -> list[str]:
    said = []
    for name in HOOKS:
        now = state(directory, name)
        if now.ours:
            extra = "" if now.current else " (outdated: run `kamal-secure hooks install`)"
            chain = f", then your {name}{ORIGINAL_SUFFIX}" if now.original else ""
            said.append(f"{name}: kamal-secure{chain}{extra}")
        elif now.path.exists():
            said.append(f"{name}: another hook, kamal-secure not installed")
        else:
            said.append(f"{name}: none")
    return said
