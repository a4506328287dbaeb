"""Route a Rails/Bundler ``bin/kamal`` through kamal-secure; uninstall restores it exactly.

Rails 8 apps run Kamal as ``bin/kamal``, a Bundler binstub that neither the
``kamal`` alias nor our PATH shim sees. ``install`` inserts a short Ruby prelude
into that file (after its shebang and leading comments, so magic comments such
as ``frozen_string_literal`` keep working). The prelude execs ``kamal-secure``
with ``KAMAL_SECURE_KAMAL`` set to this same file; after a clean verdict
kamal-secure execs the file again in the same process (``exec`` keeps the pid),
the prelude sees ``KAMAL_SECURE_EXEC`` start with its own pid and steps aside,
and the rest of the file starts the bundled Kamal as before. A ``bin/kamal``
started by anything else (a hook, a script) has another pid and is gated again.
The prelude must never contain the words kamal.kamal's ``is_kamal_secure``
looks for (``kamal_secure``, the shim marker): this file is the real Kamal.
``uninstall`` removes exactly the inserted lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kamal_secure.errors import UsageError
from kamal_secure.fileio import write_atomic

BINSTUB = Path("bin/kamal")
BEGIN = "# kamal-secure-binstub v1:"
END = "# end kamal-secure-binstub\n"
PRELUDE = f"""\
{BEGIN} `kamal-secure binstub install` added these lines and
# `kamal-secure binstub uninstall` removes them. bin/kamal goes through kamal-secure, which
# checks the deployment and then runs this same file in the same process (KAMAL_SECURE_EXEC
# starts with its pid), which goes on to the bundled Kamal below.
unless ENV.fetch("KAMAL_SECURE_EXEC", "").start_with?("#{{Process.pid}}:")
  ENV["KAMAL_SECURE_KAMAL"] = File.expand_path(__FILE__)
  begin
    exec("kamal-secure", *ARGV)
  rescue SystemCallError
    abort("bin/kamal: kamal-secure is not on PATH; refusing to run Kamal unchecked " \\
          "(`kamal-secure binstub uninstall` removes this check)")
  end
end
{END}"""


@dataclass(frozen=True)
class Stub:
    path: Path
    text: str
    start: int | None  # where our prelude begins, None when absent
    end: int | None  # just after it

    @property
    def ours(self) -> bool:
        return self.start is not None

    @property
    def current(self) -> bool:
        return self.start is not None and self.text[self.start:self.end] == PRELUDE


def read(path: Path) -> Stub:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: not found (Rails apps get it from `bundle binstubs kamal`)"
                         ) from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    if not (text.startswith("#!") and "ruby" in text.split("\n", 1)[0]):
        raise UsageError(f"{path}: not a Ruby binstub (its first line is not a ruby #!)",
                         hint="the PATH shim or the alias covers other kinds of bin/kamal")
    start = text.find(BEGIN)
    if start == -1:
        return Stub(path, text, None, None)
    end = text.find(END, start)
    if end == -1 or (start > 0 and text[start - 1] != "\n"):
        raise UsageError(f"{path}: the kamal-secure lines were edited by hand",
                         hint="restore them (or the file from git), then run the command again")
    return Stub(path, text, start, end + len(END))


def _insertion_point(text: str) -> int:
    """After the shebang and the leading comment/blank lines (Ruby's magic comments)."""
    offset = 0
    for line in text.splitlines(keepends=True):
        if offset and line.strip() and not line.lstrip().startswith("#"):
            return offset
        offset += len(line)
    return offset


def install(path: Path = BINSTUB) -> str:
    stub = read(path)
    if stub.current:
        return f"{path}: already goes through kamal-secure"
    if stub.ours:
        write_atomic(path, stub.text[:stub.start] + PRELUDE + stub.text[stub.end:])
        return f"{path}: updated"
    at = _insertion_point(stub.text)
    head = stub.text[:at] if stub.text[:at].endswith("\n") or not at else stub.text[:at] + "\n"
    if head != stub.text[:at]:
        raise UsageError(f"{path}: has no line after its comments to put the check before")
    write_atomic(path, head + PRELUDE + stub.text[at:])
    return f"{path}: now goes through kamal-secure (the bundled Kamal stays the real one)"


def uninstall(path: Path = BINSTUB) -> str:
    stub = read(path)
    if not stub.ours:
        return f"{path}: kamal-secure not installed, left alone"
    if not stub.current:
        raise UsageError(f"{path}: the kamal-secure lines differ from this version's",
                         hint="run `kamal-secure binstub install` first, then uninstall")
    write_atomic(path, stub.text[:stub.start] + stub.text[stub.end:])
    return f"{path}: restored"


def status(path: Path = BINSTUB) -> str:
    if not path.exists():
        return f"{path}: none"
    stub = read(path)
    if stub.current:
        return f"{path}: goes through kamal-secure"
    if stub.ours:
        return f"{path}: goes through kamal-secure (outdated: run `kamal-secure binstub install`)"
    return f"{path}: runs Kamal directly (kamal-secure binstub install routes it through the gate)"
