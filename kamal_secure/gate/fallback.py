"""Where the real kamal cannot be guarded (not Ruby here: Docker-wrapped, a non-Ruby wrapper).

The gate then uses kamal-secure's own model of Kamal, and refuses every argv or config
that model cannot resolve unambiguously: command prefixes and unknown words, option
spellings Thor reads differently, aliases Ruby's Shellwords may split differently,
ERB outside plain values (in comments, in ``<% %>`` blocks, in ssh settings), YAML
merge keys, symbol keys, and ssh_config files with ``Include`` or ``Match``.
"""

from __future__ import annotations

import re
from pathlib import Path

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.inventory import ssh_settings
from kamal_secure.config.load import Project, Source
from kamal_secure.errors import UsageError

HINT = ("run kamal-secure where the real kamal is Ruby (gem install kamal), or spell the "
        "command and config plainly")
FLAGS = {"-v", "--verbose", "-q", "--quiet", "-p", "--primary", "-H", "--skip-hooks", "-P",
         "--skip-push", "-y", "--yes", "--no-cache", "--help", "-i", "--interactive", "--reuse"}
VALUED = {"-c", "--config-file", "-d", "--destination", "-h", "--hosts", "-r", "--roles",
          "--version"}
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,/*@:~+-]+")
DESTINATION = re.compile(r"[A-Za-z0-9_-]+")
MERGE_KEY = re.compile(r"^[\s-]*<<\s*:", re.MULTILINE)
SYMBOL_KEY = re.compile(r"^[\s-]*:[A-Za-z_][\w-]*\s*:", re.MULTILINE)


def refuse(what: str) -> UsageError:
    return UsageError(f"cannot resolve {what} without Kamal itself (the real kamal is not "
                      "guardable here): refused", hint=HINT)


def check_argv(args: list[str]) -> None:
    """Only option spellings whose meaning to Thor is certain."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return
        if not arg.startswith("-") or arg == "-":
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name in FLAGS and not eq:
            i += 1
            continue
        if name not in VALUED:
            raise refuse(f"the option spelling {arg!r}")
        if not eq:
            if i + 1 >= len(args):
                raise refuse(f"{arg!r} without a value")
            value = args[i + 1]
            i += 1
        pattern = DESTINATION if name in ("-d", "--destination") else PLAIN_VALUE
        if not pattern.fullmatch(value) or value.startswith("-"):
            raise refuse(f"{name} {value!r}")
        i += 1


def check_alias(value: str) -> None:
    if re.search(r"[\"'\\`$]", value):
        raise refuse(f"the alias {value!r} (Ruby's Shellwords may split it differently)")


def check_config(project: Project) -> None:
    for source in project.sources:
        _check_source(source)
    _ssh_checks(project)


def _check_source(source: Source) -> None:
    text = source.masked.text
    if MERGE_KEY.search(text):
        raise refuse(f"{source.name}: a YAML merge key (Psych's precedence differs)")
    if SYMBOL_KEY.search(text):
        raise refuse(f"{source.name}: a symbol key (:key:)")
    if source.masked.conditional_lines:
        raise refuse(f"{source.name}: ERB blocks (<% if %> ... <% end %>)")
    lines = text.split("\n")
    for tag in source.masked.tags:
        if tag.kind == "statement":
            raise refuse(f"{source.name}:{tag.line}: an ERB statement")
        line = lines[tag.line - 1] if tag.line <= len(lines) else ""
        if tag.kind == "output" and line.lstrip().startswith("#"):
            raise refuse(f"{source.name}:{tag.line}: ERB in a YAML comment (it still renders)")


def _ssh_checks(project: Project) -> None:
    ssh = project.get("ssh")
    if isinstance(ssh, dict) and any(is_dynamic(v) for v in _leaves(ssh)):
        raise refuse("ssh settings produced by ERB")
    for raw in ssh_settings(project).config_files:
        _check_ssh_config(Path(raw).expanduser(), raw, included=False)


def _check_ssh_config(path: Path, name: str, included: bool, depth: int = 0) -> None:
    """``Match`` anywhere, or an ``Include`` that brings in any setting: refused.

    (Debian's own /etc/ssh/ssh_config includes an empty ssh_config.d: that passes.)"""
    try:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        raise refuse(f"the ssh config {name} (unreadable)") from None
    lines = [line.strip() for line in text.splitlines()]
    settings = [line for line in lines if line and not line.startswith("#")]
    if included and settings:
        raise refuse(f"the ssh config {name}, brought in by Include (net-ssh follows Include "
                     "its own way)")
    for line in settings:
        word, _, rest = line.replace("=", " ", 1).partition(" ")
        if word.lower() == "match":
            raise refuse(f"the ssh config {name} (Match: net-ssh resolves it its own way)")
        if word.lower() == "include" and depth < 8:
            for pattern in rest.split():
                _check_included(path, pattern, depth)


def _check_included(parent: Path, pattern: str, depth: int) -> None:
    expanded = Path(pattern).expanduser()
    if not expanded.is_absolute():
        base = Path("~/.ssh").expanduser() if parent.parent != Path("/etc/ssh") else parent.parent
        expanded = base / expanded
    anchor = Path(expanded.anchor)
    for found in sorted(anchor.glob(str(expanded.relative_to(anchor)))):
        _check_ssh_config(found, str(found), included=True, depth=depth + 1)


def _leaves(node: object) -> list[object]:
    if isinstance(node, dict):
        return [leaf for v in node.values() for leaf in _leaves(v)]
    if isinstance(node, list):
        return [leaf for v in node for leaf in _leaves(v)]
    return [node]
