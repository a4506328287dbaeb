"""The one way kamal-secure replaces a local file: whole, durable, through symlinks.

A temporary file in the same directory (created 0600, so the data is never
readable by others on the way) gets the data, then the mode, is fsynced, renamed
over the target, and the directory is fsynced: after a crash or a power
loss the target holds either the old or the new content, never a mix, and a
recovery that reads it (the rotation journal, deploy.yml) sees what was last
renamed. A symlinked target is written through (the file it points to is
replaced; the link stays). ``mode=None`` keeps the existing file's mode (0644 for
a new file); secrets pass their mode (0600). Every writer of a user's file uses
it; nothing else in the package renames a temporary file over one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

NEW_FILE_MODE = 0o644


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> None:
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = NEW_FILE_MODE
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                suffix=".kamal-secure-tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)
