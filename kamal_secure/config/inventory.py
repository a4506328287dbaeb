"""Which hosts a kamal command reaches, and how Kamal connects to them.

Mirrors Kamal 2: roles come from ``servers`` (a list is role ``web``; role
names sorted), a host is ``"1.2.3.4"`` or ``{"1.2.3.4": tags}``; accessories
sit on ``host``/``hosts``/``role``/``roles``/``tag``/``tags``; all hosts are
deduplicated in that order. ``-h`` and ``-r`` filter like
``Kamal::Utils.filter_specific_items`` (Ruby's ``File.fnmatch`` with ``{a,b}``,
kamal_secure/config/rubyglob.py).
No I/O here: the ssh settings are read from the project as data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.load import Origin, Project
from kamal_secure.config.rubyglob import expand_braces
from kamal_secure.config.rubyglob import match_expanded as ruby_fnmatch
from kamal_secure.errors import ConfigError, UsageError

DEFAULT_SSH_CONFIGS = ("~/.ssh/config", "/etc/ssh_config", "/etc/ssh/ssh_config")  # net-ssh


@dataclass(frozen=True)
class Jump:
    """``ssh.proxy``: a jump host, ``user@host:port`` (user defaults to root)."""

    user: str
    host: str
    port: int


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    port: int = 22
    proxy: Jump | None = None
    proxy_command: str | None = None
    keys: tuple[str, ...] = ()
    keys_only: bool = False
    config_files: tuple[str, ...] = DEFAULT_SSH_CONFIGS  # HostName and proxies only


@dataclass(frozen=True)
class Target:
    name: str  # as written in deploy.yml
    origin: Origin  # the file:line that names it first
    roles: tuple[str, ...] = ()

    @property
    def dynamic(self) -> bool:
        """Produced by ERB (``<%= ... %>``), which is never run: the real name is unknown."""
        return is_dynamic(self.name)

    @property
    def label(self) -> str:
        return f"<ERB at {self.origin.file}:{self.origin.line}>" if self.dynamic else self.name


@dataclass(frozen=True)
class Inventory:
    targets: tuple[Target, ...]
    ssh: SshSettings


HOST_NAME = re.compile(r"[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]*")
USER_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]*\$?")


def build_inventory(
    project: Project, hosts: Iterable[str] = (), roles: Iterable[str] = ()
) -> Inventory:
    inventory = _build(project, hosts, roles)
    for target in inventory.targets:
        if not target.dynamic and not HOST_NAME.fullmatch(target.name):
            where = f"{target.origin.file}:{target.origin.line}"
            raise ConfigError(f"{where}: {target.name!r} is not a host name or address")
    if not is_dynamic(inventory.ssh.user) and not USER_NAME.fullmatch(inventory.ssh.user):
        raise ConfigError(f"ssh.user {inventory.ssh.user!r} is not a user name")
    return inventory


def _build(project: Project, hosts: Iterable[str], roles: Iterable[str]) -> Inventory:
    role_hosts = _role_hosts(project)
    found: dict[str, Target] = {}
    for role, entries in role_hosts.items():
        for name, origin in entries:
            old = found.get(name)
            found[name] = Target(name, old.origin, (*old.roles, role)) if old else Target(
                name, origin, (role,))
    for name, origin in _accessory_hosts(project, role_hosts):
        found.setdefault(name, Target(name, origin))
    targets = _filter(list(found.values()), list(hosts), list(roles), role_hosts)
    return Inventory(tuple(targets), ssh_settings(project))


def exact_hosts(inventory: Inventory, names: Iterable[str], given_by: str) -> Inventory:
    """Exactly these hosts (the ones Kamal itself says it will use), in this order; a host
    the config does not name is kept too, checked with the config's ssh settings."""
    known = {t.name: t for t in inventory.targets}
    targets: list[Target] = []
    for name in dict.fromkeys(names):
        if name not in known and not HOST_NAME.fullmatch(name):
            raise ConfigError(f"{given_by}: {name!r} is not a host name or address")
        targets.append(known.get(name) or Target(name, Origin(given_by, 1, 1)))
    return Inventory(tuple(targets), inventory.ssh)


HostEntry = tuple[str, Origin]


def _role_hosts(project: Project) -> dict[str, list[HostEntry]]:
    servers = project.get("servers")
    if isinstance(servers, list):
        return {"web": list(_hosts_of(project, servers, ("servers",)))}
    if not isinstance(servers, dict):
        return {}
    out: dict[str, list[HostEntry]] = {}
    for role in sorted(servers):
        spec = servers[role]
        if isinstance(spec, list):
            out[role] = list(_hosts_of(project, spec, ("servers", role)))
        elif isinstance(spec, dict):
            listed = spec.get("hosts")
            items = listed if isinstance(listed, list) else []
            out[role] = list(_hosts_of(project, items, ("servers", role, "hosts")))
        else:
            out[role] = []
    return out


def _hosts_of(project: Project, items: list[Any], path: tuple[str, ...]) -> Iterator[HostEntry]:
    for i, item in enumerate(items):
        if isinstance(item, dict) and item:
            name = str(next(iter(item)))
            yield name, project.origin((*path, i, name))
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            yield str(item), project.origin((*path, i))


def _tags(item: Any) -> list[str]:
    if not isinstance(item, dict) or not item:
        return []
    value = next(iter(item.values()))
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _accessory_hosts(
    project: Project, role_hosts: dict[str, list[HostEntry]]
) -> Iterator[HostEntry]:
    accessories = project.get("accessories")
    if not isinstance(accessories, dict):
        return
    for name, spec in accessories.items():
        if isinstance(spec, dict):
            yield from _one_accessory(project, ("accessories", name), spec, role_hosts)


def _one_accessory(
    project: Project, path: tuple[str, ...], spec: dict[str, Any],
    role_hosts: dict[str, list[HostEntry]],
) -> Iterator[HostEntry]:
    if "host" in spec:
        yield str(spec["host"]), project.origin((*path, "host"))
    elif "hosts" in spec:
        items = spec["hosts"] if isinstance(spec["hosts"], list) else []
        yield from _hosts_of(project, items, (*path, "hosts"))
    elif "role" in spec or "roles" in spec:
        wanted = [spec["role"]] if "role" in spec else _as_list(spec["roles"])
        for role in wanted:
            if str(role) not in role_hosts:
                raise ConfigError(f"{'/'.join(path)}: unknown role {role}")
            yield from role_hosts[str(role)]
    elif "tag" in spec or "tags" in spec:
        wanted = [spec["tag"]] if "tag" in spec else _as_list(spec["tags"])
        yield from _tagged(project, {str(t) for t in wanted})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _tagged(project: Project, tags: set[str]) -> Iterator[HostEntry]:
    servers = project.get("servers")
    if not isinstance(servers, dict):
        return
    for role in sorted(servers):
        spec = servers[role]
        items = spec if isinstance(spec, list) else (spec or {}).get("hosts") or []
        path = ("servers", role) if isinstance(spec, list) else ("servers", role, "hosts")
        for i, item in enumerate(items if isinstance(items, list) else []):
            if tags & set(_tags(item)):
                name = str(next(iter(item)))
                yield name, project.origin((*path, i, name))


def _filter(
    targets: list[Target], hosts: list[str], roles: list[str],
    role_hosts: dict[str, list[HostEntry]],
) -> list[Target]:
    if hosts:
        matched = set(match_items(hosts, [t.name for t in targets]))
        if not matched:
            raise UsageError(f"No --hosts match for {','.join(hosts)}")
        targets = [t for t in targets if t.name in matched]
    if roles:
        chosen = match_items(roles, list(role_hosts))
        if not chosen:
            raise UsageError(f"No --roles match for {','.join(roles)}")
        allowed = {name for role in chosen for name, _ in role_hosts[role]}
        targets = [t for t in targets if t.name in allowed]
    return targets


def match_items(filters: list[str], items: list[str]) -> list[str]:
    """Kamal's filter: ``File.fnmatch(filter, item, File::FNM_EXTGLOB)`` for each filter in
    turn, matches in item order, duplicates dropped (``Kamal::Utils.filter_specific_items``)."""
    out: list[str] = []
    for pattern in filters:
        try:
            alternatives = expand_braces(pattern)
        except ValueError as err:
            raise UsageError(str(err)) from None
        for item in items:
            if item not in out and any(ruby_fnmatch(alt, item) for alt in alternatives):
                out.append(item)
    return out


def ssh_settings(project: Project) -> SshSettings:
    ssh = project.get("ssh")
    ssh = ssh if isinstance(ssh, dict) else {}
    keys = ssh.get("keys")
    return SshSettings(
        user=str(ssh.get("user", "root")),
        port=_port(ssh.get("port", 22), "ssh.port"),
        proxy=parse_jump(str(ssh["proxy"])) if ssh.get("proxy") else None,
        proxy_command=str(ssh["proxy_command"]) if ssh.get("proxy_command") else None,
        keys=tuple(str(k) for k in keys) if isinstance(keys, list) else (),
        keys_only=ssh.get("keys_only") is True,
        config_files=_config_files(ssh.get("config", True)),
    )


def _config_files(value: Any) -> tuple[str, ...]:
    if value is True or value is None:
        return DEFAULT_SSH_CONFIGS
    if value is False:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),)


def _port(value: Any, what: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{what}: {port} is not a port number")
    return port


def parse_jump(text: str) -> Jump:
    """``[user@]host[:port]``; Kamal's default user for the jump host is root."""
    user, _, rest = text.rpartition("@") if "@" in text else ("root", "", text)
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = _port(tail[1:], "ssh.proxy") if tail.startswith(":") else 22
    elif rest.count(":") == 1:
        host, _, raw = rest.partition(":")
        port = _port(raw, "ssh.proxy")
    return Jump(user or "root", host, port)


LOCAL_REGISTRY = re.compile(r"^localhost[:$]", re.MULTILINE)  # Kamal's Registry#local?


def local_registry(project: Project) -> str | None:
    """``registry.server`` when it is Kamal's local registry (``localhost:PORT``): Kamal reaches
    it from every host through SSH remote port forwarding."""
    server = project.get("registry", "server")
    return server if isinstance(server, str) and LOCAL_REGISTRY.search(server) else None
