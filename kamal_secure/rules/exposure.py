"""KS4xx: what the deployment exposes to the network."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kamal_secure.config.erb import is_dynamic
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Context, Rule, define, filled_schema_check, schema_check

FAMILY = "exposure"
BOUND = re.compile(r"^(?!0\.0\.0\.0:)(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|localhost):")
HEAD = "service: shop\nimage: acme/shop\n"

accessory_port = define(
    "KS401", Severity.HIGH, "Accessory port published on every interface",
    rationale="Kamal turns an accessory `port: \"5432\"` into `--publish 5432:5432`: bound on "
    "0.0.0.0, and Docker writes its own iptables rules, so ufw does not block it. The "
    "database is on the internet (kamal#1790).",
    fix="Bind it to loopback or a private address: `port: \"127.0.0.1:5432:5432\"`, or drop "
    "the port and reach the accessory over the kamal Docker network.",
    insecure=HEAD + "accessories:\n  db:\n    image: postgres:16.4\n    host: 203.0.113.10\n"
    "    port: 5432\n",
    secure=HEAD + "accessories:\n  db:\n    image: postgres:16.4\n    host: 203.0.113.10\n"
    "    port: \"127.0.0.1:5432:5432\"\n",
    family=FAMILY,
)(schema_check)

publish_option = define(
    "KS402", Severity.HIGH, "Port published through options without a bind address",
    rationale="`options: {publish: ...}` becomes `docker run --publish`, on 0.0.0.0 unless an "
    "address is given; Docker bypasses ufw.",
    fix="Prefix the address: `publish: \"127.0.0.1:9394:9394\"` when only the host needs it; "
    "HTTP belongs behind kamal-proxy (it serves only HTTP/HTTPS). A port meant to be public "
    "and not HTTP (a game server, SMTP) is a decision: waive it with the reason.",
    insecure=HEAD + "servers:\n  metrics:\n    hosts: [203.0.113.10]\n    options:\n"
    "      publish: \"9394:9394\"\n",
    secure=HEAD + "servers:\n  metrics:\n    hosts: [203.0.113.10]\n    options:\n"
    "      publish: \"127.0.0.1:9394:9394\"\n",
    family=FAMILY,
)(filled_schema_check(lambda ctx, value: _publish_fix(value)))

# Published on every address, these give data or control away: high. Another port may be
# meant to be public (a game server, SMTP): medium, and the fix says how to record that.
SENSITIVE_PORTS = {"22", "2375", "2376", "3306", "5432", "5984", "6379", "8086", "9000",
                   "9042", "9090", "9093", "9200", "9300", "9394", "11211", "15672", "27017"}


def _publish_fix(value: object) -> tuple[str | None, Severity | None]:
    ports = [str(p) for p in (value if isinstance(value, list) else [value])
             if p is not None and not is_dynamic(p) and not BOUND.match(str(p))]
    if not ports:
        return None, None
    first = ports[0]
    container = first.rsplit(":", 1)[-1].split("/")[0]
    bound = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
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
            yield name, role if isinstance(role, dict) else {}
    elif isinstance(servers, list):
        yield "web", {}


def _public(ports: object) -> bool:
    items = ports if isinstance(ports, list) else [ports]
    return any(not is_dynamic(p) and not BOUND.match(str(p)) for p in items if p is not None)


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
        options = role.get("options")
        if role.get("proxy") is not False or not isinstance(options, dict):
            continue
        if _public(options.get("publish", options.get("p"))):
            yield rule.finding(f"role {name} has proxy: false and publishes a port on 0.0.0.0",
                               ctx.at("servers", name, "proxy"))


def _ssl_on(proxy: object) -> bool:
    if not isinstance(proxy, dict):
        return False
    ssl = proxy.get("ssl")
    return ssl is True or isinstance(ssl, dict) or is_dynamic(ssl)


@define(
    "KS404", Severity.MEDIUM, "Proxy serves the app without TLS",
    rationale="kamal-proxy only gets a certificate when `proxy.ssl` is set; without it the app "
    "(sessions, passwords, tokens) travels in plain HTTP unless something else in front "
    "terminates TLS.",
    fix="Set `proxy: {host: app.example.com, ssl: true}` (Let's Encrypt) or give it a "
    "certificate (`ssl: {certificate_pem: ..., private_key_pem: ...}`).",
    insecure=HEAD + "proxy:\n  host: shop.example.com\n",
    secure=HEAD + "proxy:\n  host: shop.example.com\n  ssl: true\n",
    family=FAMILY,
)
def proxy_without_ssl(rule: Rule, ctx: Context) -> Iterator[Finding]:
    top = ctx.project.get("proxy")
    if top is not None and not _ssl_on(top):
        yield rule.finding("proxy.ssl is not set: kamal-proxy serves plain HTTP",
                           ctx.at("proxy"))
    for name, role in _roles(ctx):
        own = role.get("proxy")
        if not isinstance(own, dict) or _ssl_on(own):
            continue
        if "ssl" in own:
            yield rule.finding(f"role {name}: proxy.ssl is off",
                               ctx.at("servers", name, "proxy", "ssl"))
        elif top is None:
            yield rule.finding(f"role {name}: its proxy has no ssl setting",
                               ctx.at("servers", name, "proxy"))


traefik_dashboard = define(
    "KS405", Severity.HIGH, "Kamal 1 Traefik dashboard without authentication",
    rationale="`api.insecure: true` serves Traefik's dashboard and API on port 8080 with no "
    "authentication: anyone who reaches it sees every route and backend.",
    fix="Remove api.insecure (and migrate to Kamal 2's kamal-proxy).",
    insecure=HEAD + "traefik:\n  args:\n    api.insecure: true\n",
    secure=HEAD + "traefik:\n  args:\n    accesslog: true\n",
    family=FAMILY,
)(schema_check)

RULES: tuple[Rule, ...] = (accessory_port, publish_option, proxy_off_published,
                           proxy_without_ssl, traefik_dashboard)
