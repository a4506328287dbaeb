"""KS4xx: what the deployment exposes to the network."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kamal_secure.config.erb import DYNAMIC, is_dynamic
from kamal_secure.config.yamlsafe import Path
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Context, Rule, define, schema_check, yaml_path
from kamal_secure.rules.dockerargs import Flag, all_flags, public_port

FAMILY = "exposure"
HEAD = "service: shop\nimage: acme/shop\n"


PORT_ONLY = re.compile(r"(?i)port")
ADDRESS_WORDS = re.compile(r"(?i)bind|host|addr|listen|\bip\b|_ip\b|interface")


def _public(ctx: Context, path: Path, spec: object) -> bool:
    """public_port, plus a value written whole by ERB that only supplies a port number
    (`<%= ENV.fetch("DB_PORT", 5432) %>`): Kamal and Docker then bind it on 0.0.0.0."""
    if public_port(spec):
        return True
    if not isinstance(spec, str) or spec.strip(DYNAMIC):
        return False
    tags = ctx.erb_tags(path, spec)
    return bool(tags) and all(PORT_ONLY.search(t.source) and not ADDRESS_WORDS.search(t.source)
                              for t in tags)


def _accessory_ports(rule: Rule, ctx: Context) -> Iterator[Finding]:
    groups = ctx.project.get("accessories")
    for name, item in groups.items() if isinstance(groups, dict) else ():
        if isinstance(item, dict) and _public(ctx, ("accessories", name, "port"),
                                              item.get("port")):
            path: Path = ("accessories", name, "port")
            yield rule.finding(f"{yaml_path(path)} has no bind address (or a wildcard one): "
                               "published on every interface, and Docker bypasses ufw",
                               ctx.at(*path))


def _published(ctx: Context, flag: Flag) -> bool:
    return (flag.name == "publish" and _public(ctx, flag.path, flag.value)) or (
        flag.name == "publish-all" and flag.on)


def _publish_options(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for flag in all_flags(ctx.project.data):
        if _published(ctx, flag):
            fix, severity = _publish_fix(flag.value if flag.name == "publish" else None)
            yield rule.finding(f"{yaml_path(flag.path)} publishes a port on every interface "
                               "(0.0.0.0 or [::]); Docker bypasses ufw", ctx.at(*flag.path),
                               fix=fix, severity=severity)

accessory_port = define(
    "KS401", Severity.HIGH, "Accessory port published on every interface",
    rationale="Kamal turns an accessory `port: \"5432\"` into `--publish 5432:5432`: bound on "
    "0.0.0.0, and Docker writes its own iptables rules, so ufw does not block it. The "
    "database is on the internet (kamal#1790). `[::]:5432:5432` is the IPv6 wildcard, and "
    "`\"<%= port %>:5432\"` is public whatever number ERB fills in.",
    fix="Bind it to loopback or a private address: `port: \"127.0.0.1:5432:5432\"`, or drop "
    "the port and reach the accessory over the kamal Docker network.",
    insecure=HEAD + "accessories:\n  db:\n    image: postgres:16.4\n    host: 203.0.113.10\n"
    "    port: 5432\n",
    secure=HEAD + "accessories:\n  db:\n    image: postgres:16.4\n    host: 203.0.113.10\n"
    "    port: \"127.0.0.1:5432:5432\"\n",
    family=FAMILY,
)(_accessory_ports)

publish_option = define(
    "KS402", Severity.HIGH, "Port published through options without a bind address",
    rationale="`options: {publish: ...}` becomes `docker run --publish`, on 0.0.0.0 unless an "
    "address is given (`[::]` is the IPv6 wildcard, `publish-all` publishes every exposed "
    "port); Docker bypasses ufw.",
    fix="Prefix the address: `publish: \"127.0.0.1:9394:9394\"` when only the host needs it; "
    "HTTP belongs behind kamal-proxy (it serves only HTTP/HTTPS). A port meant to be public "
    "and not HTTP (a game server, SMTP) is a decision: waive it with the reason.",
    also=((Severity.MEDIUM, "a port that may be meant to be public and is not a known "
                            "database or admin port (a game server, SMTP)"),),
    insecure=HEAD + "servers:\n  metrics:\n    hosts: [203.0.113.10]\n    options:\n"
    "      publish: \"9394:9394\"\n",
    secure=HEAD + "servers:\n  metrics:\n    hosts: [203.0.113.10]\n    options:\n"
    "      publish: \"127.0.0.1:9394:9394\"\n",
    family=FAMILY,
)(_publish_options)

# Published on every address, these give data or control away: high. Another port may be
# meant to be public (a game server, SMTP): medium, and the fix says how to record that.
SENSITIVE_PORTS = {"22", "2375", "2376", "3306", "5432", "5984", "6379", "8086", "9000",
                   "9042", "9090", "9093", "9200", "9300", "9394", "11211", "15672", "27017"}


def _publish_fix(spec: str | None) -> tuple[str | None, Severity | None]:
    """The fix for one published port, from its own value (and medium when it may be meant
    to be public)."""
    if spec is None or is_dynamic(spec):
        return None, None
    parts = spec.strip().rsplit(":", 2)  # [address:]host_port:container_port, or a port
    container = parts[-1].split("/")[0]
    host_port = parts[-2] if len(parts) >= 2 else parts[-1]
    bound = f'"127.0.0.1:{host_port}:{parts[-1]}"'
    if container in SENSITIVE_PORTS:
        return (f"Prefix the address: `publish: {bound}` (port {container} should not face the "
                "internet).", None)
    return (f"If port {container} is meant to be public (not HTTP: kamal-proxy serves only "
            "HTTP/HTTPS), record that decision with a waiver and its reason; otherwise bind it: "
            f"`publish: {bound}`.", Severity.MEDIUM)


def _roles(ctx: Context) -> Iterator[tuple[str, dict[str, Any]]]:
    servers = ctx.project.get("servers")
    if isinstance(servers, dict):
        for name, role in servers.items():
            yield str(name), role if isinstance(role, dict) else {}
    elif isinstance(servers, list):
        yield "web", {}


@define(
    "KS403", Severity.MEDIUM, "Role bypasses the proxy and publishes its own ports",
    rationale="With `proxy: false` the role gets no kamal-proxy (no TLS, no host routing); "
    "publishing its port directly serves the app in plain HTTP to anyone.",
    fix="Keep the role behind kamal-proxy with ssl, or bind the published port to 127.0.0.1 "
    "and put your own TLS terminator in front.",
    insecure=HEAD + "servers:\n  api:\n    hosts: [203.0.113.10]\n    proxy: false\n"
    "    options:\n      publish: \"3000:3000\"\n",
    secure=HEAD + "servers:\n  api:\n    hosts: [203.0.113.10]\n    proxy: false\n",
    family=FAMILY,
)
def proxy_off_published(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, role in _roles(ctx):
        if role.get("proxy") is not False:
            continue
        path = ("servers", name, "options")
        if any(_published(ctx, flag) for flag in all_flags({"servers": {name: role}})
               if flag.path[: len(path)] == path):
            yield rule.finding(f"role {name} has proxy: false and publishes a port on 0.0.0.0",
                               ctx.at("servers", name, "proxy"))


def _running(name: str, own: object, primary: str) -> bool:
    """Kamal's Role#running_proxy?: the primary role unless `proxy: false`, others if truthy."""
    return own is not False if name == primary else bool(own)


def _ssl_source(layers: list[tuple[Path, Any]]) -> tuple[Path, Any] | None:
    """The proxy setting in force: the first layer (role before top level) that sets ssl."""
    for path, proxy in layers:
        if isinstance(proxy, dict) and "ssl" in proxy:
            return (*path, "ssl"), proxy["ssl"]
    return None


def _served(ctx: Context) -> Iterator[tuple[str, list[tuple[Path, Any]], Path]]:
    """(who, proxy layers, where to point when ssl is unset) for everything kamal-proxy serves."""
    top = ctx.project.get("proxy")
    primary = ctx.project.get("primary_role", default="web")
    servers = ctx.project.get("servers")
    for name, role in _roles(ctx):
        own = role.get("proxy")
        if is_dynamic(name) or is_dynamic(own) or not _running(name, own, primary):
            continue
        layers: list[tuple[Path, Any]] = [(("servers", name, "proxy"), own), (("proxy",), top)]
        where: Path = ("servers", name, "proxy") if isinstance(own, dict) or own is True else \
            ("proxy",) if top is not None else \
            ("servers", name) if isinstance(servers, dict) else ("servers",)
        yield f"role {name}", layers, where
    groups = ctx.project.get("accessories")
    for name, item in groups.items() if isinstance(groups, dict) else ():
        own = item.get("proxy") if isinstance(item, dict) else None
        if own:
            path: Path = ("accessories", name, "proxy")
            yield f"accessory {name}", [(path, own)], path


def _redirect_off(layers: list[tuple[Path, Any]]) -> Path | None:
    for path, proxy in layers:
        if isinstance(proxy, dict) and "ssl_redirect" in proxy:
            return (*path, "ssl_redirect") if proxy["ssl_redirect"] is False else None
    return None


def _tls_gaps(ctx: Context) -> Iterator[tuple[Path, str, list[str]]]:
    """Where TLS is missing: (path, "false", "unset" or "redirect", who); one per location."""
    gaps: dict[tuple[Path, str], list[str]] = {}
    for who, layers, where in _served(ctx):
        found = _ssl_source(layers)
        if found is None:
            gaps.setdefault((where, "unset"), []).append(who)
        elif is_dynamic(found[1]):
            continue
        elif found[1] is False or found[1] is None:
            gaps.setdefault((found[0], "false"), []).append(who)
        elif (redirect := _redirect_off(layers)) is not None:
            gaps.setdefault((redirect, "redirect"), []).append(who)
    for (path, kind), names in gaps.items():
        yield path, kind, names


@define(
    "KS404", Severity.MEDIUM, "Proxy serves the app without TLS",
    rationale="kamal-proxy only gets a certificate when `ssl` is set in the proxy that serves "
    "a role or accessory; without it the app (sessions, passwords, tokens) travels in plain "
    "HTTP unless something else in front terminates TLS. Kamal proxies the primary role even "
    "with no `proxy:` section at all, a role with `proxy: true` or a proxy hash, and every "
    "accessory with its own `proxy:`; a role's proxy settings override the top-level ones. "
    "`ssl_redirect: false` keeps plain HTTP open next to HTTPS.",
    fix="Set `proxy: {host: app.example.com, ssl: true}` (Let's Encrypt) or give it a "
    "certificate (`ssl: {certificate_pem: ..., private_key_pem: ...}`), in the proxy that "
    "serves the role or accessory.",
    insecure=HEAD + "servers:\n  - 203.0.113.10\nproxy:\n  host: shop.example.com\n",
    secure=HEAD + "servers:\n  - 203.0.113.10\nproxy:\n  host: shop.example.com\n  ssl: true\n",
    family=FAMILY,
)
def proxy_without_ssl(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, kind, who in _tls_gaps(ctx):
        served = ", ".join(who)
        if kind == "false":
            message = f"{yaml_path(path)} is false: kamal-proxy serves {served} in plain HTTP"
        elif kind == "redirect":
            message = (f"{yaml_path(path)} is false: kamal-proxy also serves {served} in plain "
                       "HTTP next to HTTPS")
        elif ctx.project.get(*path) is True:
            message = (f"{yaml_path(path)} is true and no proxy sets ssl: kamal-proxy serves "
                       f"{served} in plain HTTP")
        elif path[-1] == "proxy" or path == ("proxy",):
            message = f"{yaml_path(path)}.ssl is not set: kamal-proxy serves {served} in plain HTTP"
        else:
            message = (f"{served} has no proxy: section, so Kamal proxies it with the defaults: "
                       "no TLS, plain HTTP")
        yield rule.finding(message, ctx.at(*path))


traefik_dashboard = define(
    "KS405", Severity.HIGH, "Kamal 1 Traefik dashboard without authentication",
    rationale="`api.insecure: true` serves Traefik's dashboard and API on port 8080 with no "
    "authentication: anyone who reaches it sees every route and backend.",
    fix="Remove api.insecure (and migrate to Kamal 2's kamal-proxy).",
    insecure=HEAD + "traefik:\n  args:\n    api.insecure: true\n",
    secure=HEAD + "traefik:\n  args:\n    accesslog: true\n",
    family=FAMILY,
)(schema_check)

PLAIN_REGISTRY = re.compile(r"^(http://.*|\d{1,3}(\.\d{1,3}){3}(:\d+)?(/.*)?)$")
LOCAL = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[?::1\]?)(:\d+)?(/.*)?$")


def _registries(ctx: Context) -> Iterator[tuple[Path, Any]]:
    yield ("registry", "server"), ctx.project.get("registry", "server")
    groups = ctx.project.get("accessories")
    for name, item in groups.items() if isinstance(groups, dict) else ():
        registry = item.get("registry") if isinstance(item, dict) else None
        if isinstance(registry, dict):
            yield ("accessories", name, "registry", "server"), registry.get("server")


@define(
    "KS406", Severity.MEDIUM, "Registry reached over plain HTTP",
    rationale="A registry given as `http://...` or as a bare IP and port (`192.168.1.248:5000`, "
    "a self-hosted registry:2 without TLS, allowed through Docker's insecure-registries) "
    "moves the registry password and every image in clear text: anyone on the path can "
    "read the credentials or swap the image your servers run. Kamal's own local registry "
    "(`localhost:PORT`, tunnelled over SSH) is not affected.",
    fix="Put TLS in front of the registry and use its host name (`registry.example.com`), or "
    "use a hosted registry.",
    insecure=HEAD + "registry:\n  server: 192.168.1.248:5000\n  username: [REGISTRY_USER]\n"
    "  password: [REGISTRY_PASSWORD]\n",
    secure=HEAD + "registry:\n  server: registry.example.com\n  username: [REGISTRY_USER]\n"
    "  password: [REGISTRY_PASSWORD]\n",
    family=FAMILY,
)
def plain_registry(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for path, server in _registries(ctx):
        if not isinstance(server, str) or is_dynamic(server) or LOCAL.match(server.strip()):
            continue
        if PLAIN_REGISTRY.match(server.strip()):
            yield rule.finding(f"{yaml_path(path)}: the registry is reached without TLS "
                               "(http:// or a bare IP address)", ctx.at(*path))


RULES: tuple[Rule, ...] = (accessory_port, publish_option, proxy_off_published,
                           proxy_without_ssl, traefik_dashboard, plain_registry)
