"""KS00x: what the loader saw that Kamal would read differently or that needs rendering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kamal_secure.config.erb import DYNAMIC, is_dynamic
from kamal_secure.config.load import Source
from kamal_secure.config.yamlsafe import Path
from kamal_secure.report.model import Finding, Location, Severity
from kamal_secure.rules.base import Context, Rule, define, yaml_path

FAMILY = "loader"


def _at(source: Source, line: int, column: int, path: tuple[str | int, ...] = ()) -> Location:
    return Location(source.name, line, column, path=yaml_path(path) or None)


@define(
    "KS001", Severity.MEDIUM, "Duplicate key: Kamal silently takes the last one",
    rationale="YAML parsers used by Kamal keep the last of two equal keys without a word. "
    "A reviewer reading the first one (say `forward_agent: false`) sees a setting that is "
    "not in force.",
    fix="Delete one of the two keys so that the file says what Kamal will do.",
    insecure="ssh:\n  forward_agent: false\n  user: deploy\n  forward_agent: true\n",
    secure="ssh:\n  user: deploy\n  forward_agent: false\n",
    family=FAMILY,
)
def duplicate_key(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for source in ctx.project.sources:
        branches = source.masked.conditional_lines
        for path, first, second in source.loaded.duplicates:
            if first.line in branches or second.line in branches:
                continue  # if/else branches: only one exists once rendered (KS007 says so)
            yield rule.finding(
                f"{yaml_path(path)} is set twice (first at line {first.line}); "
                "Kamal uses this later one",
                _at(source, second.line, second.column, path))


@define(
    "KS002", Severity.HIGH, "Ruby object tag in YAML (!ruby/...)",
    rationale="Kamal loads YAML with `YAML.unsafe_load`, so a `!ruby/object` tag builds an "
    "arbitrary Ruby object while the config loads: a classic deserialisation gadget. No "
    "deploy config needs one.",
    fix="Remove the tag and write the value as plain YAML.",
    insecure="service: shop\nimage: !ruby/object:Gem::Requirement acme/shop\n",
    secure="service: shop\nimage: acme/shop\n",
    family=FAMILY,
)
def foreign_tag(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for source in ctx.project.sources:
        for path, tag, mark in source.loaded.foreign_tags:
            shown = tag if len(tag) <= 60 else tag[:57] + "..."
            yield rule.finding(f"YAML tag {shown} at {yaml_path(path) or 'the top level'}: "
                               "Kamal would construct a Ruby object here",
                               _at(source, mark.line, mark.column, path))


@define(
    "KS006", Severity.INFO, "ERB runs a shell command while the config loads",
    rationale="Backticks, %x() and system() inside ERB run on your machine on every kamal "
    "call, including read-only ones such as `kamal config`. That is often intended (fetching "
    "a token), but it is code execution hidden in a config file: review it like a script.",
    fix="Prefer secrets in .kamal/secrets (`$(op read ...)`), which only run when needed.",
    insecure="service: shop\nimage: acme/shop\nregistry:\n  username: <%= `whoami`.strip %>\n",
    secure="service: shop\nimage: acme/shop\nregistry:\n  username: acme\n",
    family=FAMILY,
)
def erb_shell(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for source in ctx.project.sources:
        for tag in source.masked.tags:
            if tag.runs_shell:
                yield rule.finding("ERB runs a shell command here on every kamal call",
                                   _at(source, tag.line, tag.column))


@define(
    "KS007", Severity.INFO, "Part of the config cannot be audited without rendering ERB",
    rationale="kamal-secure never runs ERB. Lines inside `<% if %>`/loops may or may not "
    "exist, and ERB in a key makes the key unknown; the checks there are incomplete.",
    fix="Move the variation into destination files (deploy.DEST.yml), which are audited "
    "statically, or keep ERB to values.",
    insecure="service: shop\nimage: acme/shop\n<% if ENV['DEBUG'] %>\nssh:\n  user: root\n"
    "<% end %>\n",
    secure="service: shop\nimage: acme/shop\nssh:\n  user: deploy\n",
    family=FAMILY,
)
def needs_rendering(rule: Rule, ctx: Context) -> Iterator[Finding]:
    yield from _dynamic_settings(rule, ctx)
    yield from _generated(rule, ctx)
    for source in ctx.project.sources:
        for first, last in _ranges(source.masked.conditional_lines):
            yield rule.finding(f"lines {first}-{last} sit inside an ERB block (if/unless/loop): "
                               "whether and how often they apply is only known when rendered",
                               _at(source, first, 1))
        yield from _structural(rule, source)
        for path, mark in source.loaded.marks.items():
            if path and isinstance(path[-1], str) and DYNAMIC in path[-1]:
                parent = yaml_path(path[:-1]) or "the top level"
                yield rule.finding(f"a key under {parent} is produced by ERB: its checks are "
                                   "skipped", _at(source, mark.line, mark.column))


# Settings whose safety the rules decide; ERB there means "only known when rendered".
DECISIVE: tuple[tuple[str, ...], ...] = (
    ("ssh", "user"), ("ssh", "keys_only"), ("ssh", "forward_agent"), ("ssh", "proxy"),
    ("proxy", "ssl"), ("accessories", "*", "port"), ("accessories", "*", "image"),
    ("servers", "*", "options", "*"), ("accessories", "*", "options", "*"),
)


def _decisive(node: Any, pattern: tuple[str, ...], path: Path) -> Iterator[Path]:
    if not pattern:
        if is_dynamic(node):
            yield path
        return
    if not isinstance(node, dict):
        return
    keys = list(node) if pattern[0] == "*" else [pattern[0]] if pattern[0] in node else []
    for key in keys:
        yield from _decisive(node[key], pattern[1:], (*path, key))


def _dynamic_settings(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for pattern in DECISIVE:
        for path in _decisive(ctx.project.data, pattern, ()):
            yield rule.finding(f"{yaml_path(path)} comes from ERB: whether it is safe is only "
                               "known when rendered, so its checks are skipped", ctx.at(*path))


def _hosts(servers: Any) -> Iterator[Any]:
    roles = servers.values() if isinstance(servers, dict) else [servers]
    for role in roles:
        hosts = role.get("hosts") if isinstance(role, dict) else role
        for host in hosts if isinstance(hosts, list) else [hosts]:
            yield from (host.keys() if isinstance(host, dict) else [host])


def _all_dynamic(values: list[Any]) -> bool:
    return bool(values) and all(is_dynamic(v) or (isinstance(v, str) and not v.strip(DYNAMIC))
                                for v in values)


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def _generated(rule: Rule, ctx: Context) -> Iterator[Finding]:
    """Hosts or ssh settings that ERB writes entirely: say so once, at the section."""
    servers = ctx.project.get("servers")
    if servers is not None and _all_dynamic(list(_hosts(servers))):
        yield rule.finding("every host in servers comes from ERB: which machines Kamal "
                           "connects to is only known when rendered", ctx.at("servers"))
    ssh = ctx.project.get("ssh")
    if ssh is not None and _all_dynamic(list(_leaves(ssh))):
        yield rule.finding("the ssh settings come entirely from ERB: user, keys and forwarding "
                           "are only known when rendered", ctx.at("ssh"))


def _structural(rule: Rule, source: Source) -> Iterator[Finding]:
    """Output tags alone on a line: ERB writes YAML structure there, not a value."""
    lines = source.masked.text.split("\n")
    for tag in source.masked.tags:
        if tag.kind != "output" or tag.line > len(lines):
            continue
        text = lines[tag.line - 1].split(" #", 1)[0].strip()
        if text and not text.strip(DYNAMIC):
            yield rule.finding(f"line {tag.line} is produced entirely by ERB: the keys it writes "
                               "are only known when rendered", _at(source, tag.line, tag.column))


def _ranges(lines: frozenset[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(lines)
    start = prev = ordered[0] if ordered else 0
    for line in ordered[1:]:
        if line != prev + 1:
            yield start, prev
            start = line
        prev = line
    if ordered:
        yield start, prev


RULES: tuple[Rule, ...] = (duplicate_key, foreign_tag, erb_shell, needs_rendering)
