"""What Kamal hands to ``docker run``: options rendered as flags, mounts and published ports.

Kamal's ``optionize`` (lib/kamal/utils.rb) turns each ``options`` entry into
``--KEY VALUE``, or ``--KEY`` alone when the value is ``true``; a list repeats
the flag. The key is not escaped, so ``"privileged=true": true`` becomes
``--privileged=true`` and ``"cap-add SYS_ADMIN": true`` two words. Rules read
the flags Docker will parse, whatever the YAML spelling.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kamal_secure.config.erb import DYNAMIC, is_dynamic
from kamal_secure.config.yamlsafe import Path

# docker run flags that take no value: a following word is not theirs.
BOOLEAN = frozenset({"privileged", "init", "rm", "detach", "d", "interactive", "i", "tty",
                     "t", "read-only", "no-healthcheck", "oom-kill-disable", "publish-all", "P",
                     "sig-proxy", "disable-content-trust", "help", "quiet", "q"})
ALIAS = {"v": "volume", "p": "publish", "u": "user", "net": "network", "d": "detach",
         "P": "publish-all", "e": "env", "l": "label", "w": "workdir", "h": "hostname"}
OFF = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Flag:
    """One flag as Docker parses it, with the YAML path it came from."""

    name: str  # canonical long name: volume, publish, cap-add
    value: str | None  # None: given alone (``--privileged``)
    path: Path  # the options entry (and list index) in deploy.yml

    @property
    def on(self) -> bool:
        """A boolean flag is set: given alone or with a true value."""
        return self.value is None or self.value.strip().lower() not in OFF


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _entries(key: str, value: Any, path: Path) -> Iterator[tuple[list[str], Path]]:
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    for index, item in items:
        where = path if index is None else (*path, index)
        if item is None or item is False:
            continue  # `privileged: false`: the YAML says off (Docker would choke anyway)
        words = _words(f"--{key}")
        if item is not True:
            words.append(str(item))  # Kamal escapes the value: it stays one word
        yield words, where


def _parse(words: list[str], where: Path) -> Iterator[Flag]:
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-") or word in ("-", "--"):
            continue
        name, equals, inline = word.lstrip("-").partition("=")
        name = ALIAS.get(name, name)
        if equals:
            yield Flag(name, inline, where)
        elif name in BOOLEAN or index >= len(words):
            yield Flag(name, None, where)
        else:
            yield Flag(name, words[index], where)
            index += 1


def flags(options: Any, path: Path) -> Iterator[Flag]:
    """Every docker flag an ``options`` hash renders to; ERB-made keys are skipped (KS007)."""
    if not isinstance(options, dict):
        return
    for key, value in options.items():
        if not isinstance(key, str) or DYNAMIC in key:
            continue
        for words, where in _entries(key, value, (*path, key)):
            yield from _parse(words, where)


def option_sets(data: dict[str, Any]) -> Iterator[tuple[Path, Any]]:
    """(path, options) of every role, every accessory and kamal-proxy's own container."""
    for section in ("servers", "accessories"):
        groups = data.get(section)
        if isinstance(groups, dict):
            for name, item in groups.items():
                if isinstance(item, dict) and "options" in item:
                    yield (section, name, "options"), item["options"]
    proxy = data.get("proxy")
    run = proxy.get("run") if isinstance(proxy, dict) else None
    if isinstance(run, dict) and "options" in run:
        yield ("proxy", "run", "options"), run["options"]


def all_flags(data: dict[str, Any]) -> Iterator[Flag]:
    for path, options in option_sets(data):
        yield from flags(options, path)


# --- mounts -----------------------------------------------------------------------------

def host_path(spec: str) -> str | None:
    """The host side of a ``-v``/``--mount`` spec, normalised; None for named volumes. ERB
    stays as one DYNAMIC character, so no fixed host path can match it."""
    text = spec.strip()
    if "=" in text.split(",", 1)[0]:
        fields = dict(part.partition("=")[::2] for part in text.split(","))
        source = fields.get("source", fields.get("src"))
        if source is None or fields.get("type", "bind") != "bind":
            return None
        text = source
    else:
        text = text.split(":", 1)[0]
    if text.startswith(DYNAMIC):  # `<%= ENV["HOME"] %>/.ssh`: the literal rest still counts
        text = "/" + DYNAMIC + text.lstrip(DYNAMIC)
    if not text.startswith("/"):
        return None
    return normalise(re.sub(DYNAMIC + "+", DYNAMIC, text))


def normalise(path: str) -> str:
    """``//var/run/../run/docker.sock/`` -> ``/run/docker.sock``; /var/run is /run."""
    clean = posixpath.normpath("/" + path.lstrip("/"))
    if clean == "/var/run" or clean.startswith("/var/run/"):
        clean = clean[len("/var"):]
    return clean


def mounts(data: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """(normalised host path, YAML path) of every bind mount: volumes lists and options."""
    lists: list[tuple[Path, Any]] = [(("volumes",), data.get("volumes"))]
    for section in ("servers", "accessories"):
        groups = data.get(section)
        if isinstance(groups, dict):
            lists += [((section, name, "volumes"), item.get("volumes"))
                      for name, item in groups.items() if isinstance(item, dict)]
    for path, value in lists:
        items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        for index, spec in enumerate(items):
            where = (*path, index) if isinstance(value, list) else path
            found = host_path(spec) if isinstance(spec, str) else None
            if found is not None:
                yield found, where
    for flag in all_flags(data):
        if flag.name in ("volume", "mount") and flag.value is not None:
            found = host_path(flag.value)
            if found is not None:
                yield found, flag.path


# --- published ports --------------------------------------------------------------------

WILDCARD = frozenset({"0.0.0.0", "[::]", "::", "[::0]", "*", ""})  # noqa: S104
ADDRESS = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.%a-z]+\]|localhost)$")


def public_port(spec: object) -> bool:
    """Does ``--publish SPEC`` listen on every interface? ERB only hides what it covers.

    ``5432``, ``"5432:5432"``, ``"0.0.0.0:5432:5432"``, ``"[::]:5432:5432"`` and
    ``"<%= port %>:5432"`` are public; ``"127.0.0.1:5432:5432"`` is not; a spec whose
    address part comes from ERB is unknown (not reported here, KS007 says so).
    """
    if spec is None or isinstance(spec, bool):
        return False
    text = str(spec).strip()
    if not text or text == DYNAMIC * len(text):
        return False
    address, colon, rest = _split_address(text)
    if not colon:
        return True  # PORT: Docker binds 0.0.0.0
    if is_dynamic(address) and ":" in rest:
        return False  # the address comes from ERB
    if address in WILDCARD:
        return True
    if ADDRESS.match(address):
        return False
    return ":" not in rest  # HOSTPORT:CONTAINERPORT, no address


def _split_address(text: str) -> tuple[str, str, str]:
    """``[::1]:80:80`` -> (``[::1]``, ``:``, ``80:80``); ``80:80`` -> (``80``, ``:``, ``80``)."""
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1], text[end + 1: end + 2], text[end + 2:]
    return text.partition(":")
