"""``ssh.config`` / ``~/.ssh/config``: where Kamal's net-ssh actually connects.

Kamal passes its own ``user`` and ``port`` (``ssh.port``, default 22) and, when
set, ``ssh.proxy``/``ssh.proxy_command`` explicitly, so ``User`` and ``Port``
here never apply; ``HostName`` does, and so do ``ProxyCommand``/``ProxyJump``
when deploy.yml sets no proxy.

This reads the files the way net-ssh 7 (``Net::SSH::Config.load``) does, not
the way OpenSSH or paramiko do: ``Include`` is followed (relative to the first
file's directory, globbed), ``Host`` patterns know only ``*``/``?``/``!``,
``Match`` evaluates ``all`` and ``host`` only and ignores every other criterion
(``exec`` is never run: net-ssh never runs it, so Kamal never does), values
set before the first ``Host``/``Match`` lose to values from a matching block,
and a global ``ProxyCommand`` counts only once net-ssh has moved it into
place. Nothing here starts a process or opens a connection.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.inventory import SshSettings
from kamal_secure.errors import CheckIncomplete
from kamal_secure.facts.host import Unchecked

MAX_INCLUDE_DEPTH = 16  # net-ssh has no limit and dies of a stack overflow
MAX_FILE_BYTES = 256 * 1024
COMMENT_RE = re.compile(r"^\s*(?:#.*)?$")
EQUALS_RE = re.compile(r"^\s*(\S+)\s*=(.*)$")
MATCH_SPLIT_RE = re.compile(r"[ \t\r\n]+|(?<!=)=(?!=)")
TOKEN_RE = re.compile(r'([^"\s]+)?(?:"([^"]+)")?\s*')


class SshConfigError(CheckIncomplete):
    """A file net-ssh would choke on, or a route kamal-secure does not follow."""

    reason: Unchecked = "unreachable"


@dataclass(frozen=True)
class HostConfig:
    """What net-ssh takes from the ssh config files for one host name."""

    hostname: str  # HostName (with %h), or the name itself
    proxy: tuple[str, str] | None  # ("proxycommand" | "proxyjump", value), "none" dropped


def resolve(name: str, ssh: SshSettings) -> tuple[str, int]:
    """The address Kamal connects to for ``name``, and its port (always ``ssh.port``).

    Raises SshConfigError when the ssh config sends this host through a
    ``ProxyCommand``/``ProxyJump`` that deploy.yml does not override: Kamal would go
    through it, and checking the host directly would check another route."""
    found = lookup(name, ssh.config_files)
    if found.proxy is not None and ssh.proxy is None and not ssh.proxy_command:
        kind = found.proxy[0]
        shown = "ProxyCommand" if kind == "proxycommand" else "ProxyJump"
        raise SshConfigError(
            f"{name}: the ssh config sets {shown} for this host, so Kamal connects through "
            "it; kamal-secure does not follow ssh config proxies (set ssh.proxy or "
            "ssh.proxy_command in deploy.yml instead)")
    return found.hostname, ssh.port


def lookup(name: str, files: tuple[str, ...]) -> HostConfig:
    settings: dict[str, Any] = {}
    if any(is_dynamic(raw) for raw in files):
        raise SshConfigError(f"{name}: ssh.config comes from ERB, which kamal-secure never "
                             "runs: the ssh config Kamal reads (HostName, proxies) is unknown")
    for raw in files:
        settings = _load(raw, name, settings, None, 0)
    hostname = name
    if "hostname" in settings:
        value = settings["hostname"]
        if not isinstance(value, str):
            raise SshConfigError(f"{name}: HostName {value!r} in the ssh config is not a "
                                 "name (net-ssh fails on it)")
        host = settings.get("host")
        if not isinstance(host, str):
            raise SshConfigError(f"{name}: HostName is set outside any Host block and net-ssh "
                                 "fails on that (no host to substitute for %h)")
        hostname = value.replace("%h", host)
    proxy = settings.get("proxy")
    if proxy is not None:
        kind, value = proxy
        if kind == "proxycommand" and re.fullmatch(r"none", str(value)):
            proxy = None
        else:
            proxy = (kind, str(value))
    return HostConfig(hostname, proxy)


def _read_lines(path: Path) -> list[str] | None:
    try:
        if not path.is_file() or not os.access(path, os.R_OK):
            return None
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES:
        raise SshConfigError(f"{path}: ssh config larger than {MAX_FILE_BYTES // 1024} KiB")
    return data.decode("utf-8", "replace").splitlines()


def _load(raw: str, host: str, settings: dict[str, Any], base_dir: str | None,
          depth: int) -> dict[str, Any]:
    if depth > MAX_INCLUDE_DEPTH:
        raise SshConfigError(f"{raw}: Include nested more than {MAX_INCLUDE_DEPTH} deep "
                             "(a loop?)")
    file = Path(raw).expanduser().absolute()  # Ruby's File.expand_path: no symlinks resolved
    lines = _read_lines(file)
    if lines is None:
        return settings
    block = _Block(host, base_dir or str(file.parent), depth, str(file))
    for line in lines:
        if COMMENT_RE.match(line):
            continue
        parsed = _split(line)
        if parsed is None:
            continue
        settings = block.line(settings, *parsed)
        for proxy_key in ("proxyjump", "proxycommand"):
            if proxy_key in settings:
                proxy_value = settings.pop(proxy_key)
                settings.setdefault("proxy", (proxy_key, proxy_value))
    merged = dict(block.globals)
    for key, value in settings.items():
        if key in ("identityfile", "certificatefile") and key in merged:
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


@dataclass
class _Block:
    """Where one file's reader stands: before any Host/Match, in a matching block or not."""

    host: str
    base_dir: str
    depth: int
    file: str
    globals: dict[str, Any] = field(default_factory=dict)
    matched: bool = False
    seen: bool = False

    def line(self, settings: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
        if key == "host":
            words = [w for w in re.split(r"\s+", _text(value)) if w]
            negative = [w[1:] for w in words if w.startswith("!")]
            positive = [w for w in words if not w.startswith("!")]
            if any(_pattern(p).match(self.host) for p in negative):
                self.matched = False
            else:
                self.matched = any(_pattern(p).match(self.host) for p in positive)
            self.seen = True
            settings["host"] = self.host
        elif key == "match":
            self.matched = _match(_text(value), self.host, self.file)
            self.seen = True
        elif not self.seen:
            self.globals = self._set(self.globals, settings, key, value)
        elif self.matched:
            settings = self._set(settings, settings, key, value)
        return settings

    def _set(self, target: dict[str, Any], settings: dict[str, Any], key: str,
             value: Any) -> dict[str, Any]:
        """net-ssh: list keys append, Include recurses, others are first-wins against
        ``settings`` (so a global loses to any value a matching block already set)."""
        if key in ("identityfile", "certificatefile"):
            target.setdefault(key, []).append(value)
        elif key == "include":
            for path in _included(self.base_dir, _text(value)):
                target = _load(path, self.host, target, self.base_dir, self.depth + 1)
        elif key not in settings:
            target[key] = value
        return target


def _split(line: str) -> tuple[str, Any] | None:
    found = EQUALS_RE.match(line)
    if found:
        key, value = found.group(1), found.group(2)
    else:
        parts = re.split(r"\s+", line.strip(), maxsplit=1)
        if len(parts) < 2:
            return None  # net-ssh silently ignores a key without a value
        key, value = parts
    value = _unquote(value)
    stripped = value.strip()
    converted: Any = value
    if re.fullmatch(r"\d+", stripped):
        converted = int(stripped)
    elif re.fullmatch(r"no", stripped, re.IGNORECASE):
        converted = False
    elif re.fullmatch(r"yes", stripped, re.IGNORECASE):
        converted = True
    return key.lower(), converted


def _unquote(value: str) -> str:
    found = re.fullmatch(r'"(.*)"', value)
    return found.group(1) if found else value


def _text(value: Any) -> str:
    """Ruby's ``to_s`` of a converted value."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _pattern(pattern: str) -> re.Pattern[str]:
    """net-ssh's pattern2regex: ``*`` and ``?`` only, whole name, any case."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
                   for ch in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE)


def _match(condition: str, host: str, file: str) -> bool:
    words = [w for w in MATCH_SPLIT_RE.split(condition) if w]
    if words == ["all"]:
        return True
    results: list[bool] = []
    for i in range(0, len(words), 2):
        kind = words[i].lower()
        exprs = _unquote(words[i + 1]) if i + 1 < len(words) else None
        if kind == "all":
            raise SshConfigError(f"{file}: Match all mixed with other criteria (net-ssh "
                                 "stops on it)")
        if kind == "host":
            if exprs is None:
                raise SshConfigError(f"{file}: Match host without a pattern (net-ssh stops "
                                     "on it)")
            negated = exprs.startswith("!")
            if negated:
                exprs = exprs[1:]
            met = any(_pattern(expr).match(host) for expr in exprs.split(","))
            results.append(negated != met)
        # every other criterion (exec, user, localuser, ...) is ignored, as in net-ssh
    return bool(results) and all(results)


def _included(base_dir: str, value: str) -> list[str]:
    paths: list[str] = []
    for match in TOKEN_RE.finditer(value):
        token = (match.group(1) or "") + (match.group(2) or "")
        if not token:
            continue
        full = Path(base_dir) / Path(token).expanduser()  # an absolute token stays absolute
        paths.extend(p for p in sorted(glob.glob(str(full))) if Path(p).is_file())  # noqa: PTH207
    return paths
