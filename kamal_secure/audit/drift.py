"""Drift watch: the approved state file, and live facts compared with it.

``.kamal/secure-state.json`` holds, per host and per kind of fact, one fact per line
in sorted order, so that a pull request diff reads "host X gained key Y" and an
unchanged host rewrites the file byte for byte. A kind that could not be read is the
string ``"unknown: why"``, never an empty set.

The host checks call :class:`Watch` through one hook (``hosts.audit_hosts``): its
``collect`` runs on each host's existing session, its ``findings`` compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamal_secure.config.load import Project, load_project, read_text
from kamal_secure.errors import ConfigError, KamalSecureError, UsageError
from kamal_secure.remote.drift_facts import HostState
from kamal_secure.report.model import Finding, Location, Severity
from kamal_secure.resources import schema_text
from kamal_secure.rules import drift as rules
from kamal_secure.rules.base import Rule

if TYPE_CHECKING:
    from kamal_secure.config.inventory import Target
    from kamal_secure.facts.host import HostFacts
    from kamal_secure.remote.fleet import FleetResult
    from kamal_secure.remote.sshd import Runner

STATE_FILE = Path(rules.STATE_PATH)
FORMAT = "kamal-secure-state/1"
UNKNOWN = "unknown: "
MAX_BYTES = 8 * 1024 * 1024

# sshd -T keywords a host rule (KS7xx) already judges: their changes are reported once, by
# that rule, when the new value is unsafe (tests/test_drift.py checks each one is read there).
JUDGED = frozenset({
    "allowagentforwarding", "allowgroups", "allowtcpforwarding", "allowusers",
    "authenticationmethods", "banner", "ciphers", "clientalivecountmax", "clientaliveinterval",
    "gatewayports", "hostbasedauthentication", "ignorerhosts", "kbdinteractiveauthentication",
    "kexalgorithms", "logingracetime", "loglevel", "macs", "maxauthtries",
    "passwordauthentication", "permitemptypasswords", "permitrootlogin", "permittunnel",
    "permituserenvironment", "port", "printlastlog", "pubkeyauthentication", "strictmodes",
    "x11forwarding",
})
# sshd -T keywords whose content is a kind of its own: ca_key (KS757) holds the keys
COVERED = frozenset({"trustedusercakeys"})
# kind -> (rule, severity of an addition or change, what the fact is called)
KINDS: dict[str, tuple[Rule, Severity, str]] = {
    "authorized_key": (rules.AUTHORIZED_KEY, Severity.HIGH, "authorized key"),
    "hostkey": (rules.HOST_KEY, Severity.HIGH, "host key"),
    "group": (rules.PRIVILEGED_GROUP, Severity.HIGH, "group member"),
    "sudoers": (rules.SUDOERS, Severity.HIGH, "sudo rule"),
    "listen": (rules.LISTENER, Severity.MEDIUM, "listening TCP port"),
    "sshd": (rules.SSHD_SETTING, Severity.MEDIUM, "sshd setting"),
    "sshd_source": (rules.SSHD_SETTING, Severity.MEDIUM, "sshd settings source"),
    "ca_key": (rules.CA_KEY, Severity.HIGH, "TrustedUserCAKeys key"),
}


@dataclass
class State:
    hosts: dict[str, HostState]
    lines: dict[str, int] = field(default_factory=dict)  # host -> its line in the file read


def _kind(name: str) -> tuple[Rule, Severity, str]:
    return KINDS[name.split(" ", 1)[0]]


# ---- the file ------------------------------------------------------------------------

def _one_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def render(state: State) -> str:
    """The state file's text: sorted, one fact per line, nothing that changes by itself."""
    hosts = []
    for name in sorted(state.hosts):
        host = state.hosts[name]
        kinds = []
        for kind in sorted(set(host.facts) | set(host.unknown)):
            label = _one_line(kind)
            if kind in host.unknown:
                kinds.append(f"      {label}: {_one_line(UNKNOWN + host.unknown[kind])}")
                continue
            facts = host.facts[kind]
            rows = ",\n".join(f"        {_one_line(subject)}: {_one_line(facts[subject])}"
                              for subject in sorted(facts))
            kinds.append(f"      {label}: {{\n{rows}\n      }}" if rows else f"      {label}: {{}}")
        body = ",\n".join(kinds)
        hosts.append(f"    {_one_line(name)}: {{\n{body}\n    }}" if body
                     else f"    {_one_line(name)}: {{}}")
    inner = ",\n".join(hosts)
    block = f"{{\n{inner}\n  }}" if inner else "{}"
    return f'{{\n  "format": "{FORMAT}",\n  "hosts": {block}\n}}\n'


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(schema_text("secure-state.schema.json"))
    return jsonschema.Draft202012Validator(schema)


def parse(text: str, name: str = str(STATE_FILE)) -> State:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{name}: not JSON ({err.msg} at line {err.lineno})") from None
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise ConfigError(f"{name}: not a kamal-secure state file: {where}: "
                          f"{errors[0].message[:200]}",
                          hint="rewrite it with `kamal-secure snapshot --approve`")
    hosts = {}
    for host, kinds in data["hosts"].items():
        state = HostState()
        for kind, facts in kinds.items():
            if isinstance(facts, str):
                state.unknown[kind] = facts.removeprefix(UNKNOWN)
            else:
                state.facts[kind] = dict(facts)
        hosts[host] = state
    return State(hosts, _host_lines(text))


def _host_lines(text: str) -> dict[str, int]:
    """Where each host starts, in a file as render() writes it (for locations)."""
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith('    "') and line.endswith(("{", "{},", "{}")):
            try:
                found[json.loads(line.strip().rsplit(":", 1)[0])] = number
            except json.JSONDecodeError:
                continue
    return found


def read(root: Path) -> State | None:
    path = root / STATE_FILE
    if not path.is_file():
        return None
    return parse(read_text(path, str(STATE_FILE), MAX_BYTES))


def write(root: Path, state: State) -> bool:
    """Write the state atomically; False (and nothing written) when it is unchanged."""
    from kamal_secure.fileio import write_atomic

    path = root / STATE_FILE
    text = render(state)
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
        write_atomic(path, text)
    except OSError as err:
        raise UsageError(f"cannot write {STATE_FILE}: {err.strerror or err}") from None
    return True


# ---- comparing -----------------------------------------------------------------------

def _same(kind: str, old: Any, new: Any) -> bool:
    if kind.startswith("authorized_key") and isinstance(old, dict) and isinstance(new, dict):
        return (old.get("type"), old.get("options")) == (new.get("type"), new.get("options"))
    if kind == "listen" and "?" in (old, new):
        return True  # which process listens could not be seen on one side: not a change
    return bool(old == new)


def _show(kind: str, subject: str, value: Any) -> str:
    if kind.startswith("authorized_key") and isinstance(value, dict):
        options = f", options {value.get('options')}" if value.get("options") else ""
        return f"{value.get('type')} {subject} ({value.get('comment') or 'no comment'}{options})"
    if kind == "listen":
        return f"{subject} ({value})" if value != "?" else subject
    if kind in ("sshd", "hostkey"):
        return f"{subject} {value}"
    return subject


def _who(kind: str) -> str:
    user = kind.split(" ", 1)[1] if " " in kind else ""
    return f" for {user}" if user else ""


def compare(approved: HostState, live: HostState, host: str, where: Location,
            judged: bool = False) -> Iterator[Finding]:
    """Every added, removed or changed fact of one host, and every fact now unknown.

    Settings a host rule judges are left to that rule unless ``judged`` (what
    ``snapshot`` lists: everything ``--approve`` would accept)."""
    kinds = sorted(set(approved.facts) | set(approved.unknown) | set(live.facts) |
                   set(live.unknown))
    source = approved.facts.get("sshd_source"), live.facts.get("sshd_source")
    if source[0] and source[1] and source[0] != source[1]:  # sshd -T against parsed files
        kinds = [k for k in kinds if k not in ("sshd", "sshd_source")]
        yield rules.UNKNOWN.finding(
            f"host {host}: sshd settings were approved from {source[0].get('kind')} but read "
            f"from {source[1].get('kind')} now; they cannot be compared", where,
            severity=Severity.MEDIUM)
    for kind in kinds:
        rule, severity, noun = _kind(kind)
        if kind in live.unknown or kind in approved.unknown:
            yield from _unknown(kind, noun, severity, approved, live, host, where)
            continue
        old, new = approved.facts.get(kind, {}), live.facts.get(kind, {})
        if kind == "sshd_source":
            continue
        for subject in sorted(set(old) | set(new)):
            if kind == "sshd" and (subject in COVERED or (subject in JUDGED and not judged)):
                continue  # the host rule that judges it (or the kind that holds it) reports it
            yield from _change(rule, severity, kind, noun, subject, old, new, host, where)


def _change(rule: Rule, severity: Severity, kind: str, noun: str, subject: str,
            old: dict[str, Any], new: dict[str, Any], host: str, where: Location
            ) -> Iterator[Finding]:
    who = _who(kind)
    if subject not in old:
        yield rule.finding(f"host {host} gained {noun}{who}: {_show(kind, subject, new[subject])}",
                           where, severity=severity)
    elif subject not in new:
        yield rule.finding(f"host {host} lost {noun}{who}: {_show(kind, subject, old[subject])}",
                           where, severity=Severity.LOW)
    elif not _same(kind, old[subject], new[subject]):
        yield rule.finding(f"host {host} changed {noun}{who}: "
                           f"{_show(kind, subject, old[subject])} -> "
                           f"{_show(kind, subject, new[subject])}", where, severity=severity)


def _unknown(kind: str, noun: str, severity: Severity, approved: HostState, live: HostState,
             host: str, where: Location) -> Iterator[Finding]:
    what = f"{noun}s{_who(kind)}"
    if kind in live.unknown and kind in approved.unknown:
        yield rules.UNKNOWN.finding(f"host {host}: {what} unknown, as when approved "
                                    f"({live.unknown[kind]})", where, severity=Severity.INFO)
    elif kind in live.unknown:
        yield rules.UNKNOWN.finding(f"host {host}: approved {what} cannot be read now, so they "
                                    f"may have changed ({live.unknown[kind]})", where,
                                    severity=severity)
    else:
        yield rules.UNKNOWN.finding(f"host {host}: {what} are readable now but were unknown "
                                    "when approved; approve again to watch them", where,
                                    severity=Severity.LOW)


# ---- the hook the host checks call ---------------------------------------------------

def destinations(project: Project) -> list[str]:
    """The destinations beside the config file: ``deploy.<name>.yml``."""
    stem = project.config_path.stem
    return [Path(f).stem.removeprefix(f"{stem}.") for f in project.destination_files]


def config_hosts(config_file: str, root: Path) -> set[str] | None:
    """Every host of the config, all destinations; None when one cannot be loaded."""
    names: set[str] = set()
    from kamal_secure.config.inventory import build_inventory

    try:
        base = load_project(config_file, None, root)
        projects = [base] + [load_project(config_file, d, root) for d in destinations(base)]
        for project in projects:
            names.update(t.name for t in build_inventory(project).targets if not t.dynamic)
    except KamalSecureError:
        return None
    return names


@dataclass
class Watch:
    """Handed to the fleet as ``collect``; then turns what it collected into findings."""

    state: State
    root: Path
    config_file: str

    @staticmethod
    def collect(runner: Runner, facts: HostFacts) -> HostState:
        from kamal_secure.remote.drift_facts import collect

        return collect(runner, facts)

    def findings(self, result: FleetResult, targets: Iterable[Target], filtered: bool
                 ) -> tuple[list[Finding], list[str]]:
        found: list[Finding] = []
        checked: list[str] = []
        for target, facts in result.facts:
            where = Location(target.origin.file, target.origin.line, target.origin.column,
                             host=facts.label)
            live = result.collected.get(target.name)
            approved = self.state.hosts.get(target.name)
            if not isinstance(live, HostState):
                continue
            if approved is None:
                found.append(rules.HOST_SET.finding(
                    f"host {target.name} is in the config but not in the approved state",
                    where))
                continue
            found.extend(compare(approved, live, target.name, where))
            checked.append(f"host {facts.label}: compared with {STATE_FILE}")
        if not filtered:
            found.extend(self._gone(targets))
        return found, checked

    def _gone(self, targets: Iterable[Target]) -> Iterator[Finding]:
        present = {t.name for t in targets}
        extra = [h for h in sorted(self.state.hosts) if h not in present]
        if not extra:
            return
        everywhere = config_hosts(self.config_file, self.root)
        for host in extra:
            if everywhere is not None and host not in everywhere:
                yield rules.HOST_SET.finding(
                    f"approved host {host} is no longer in the config (any destination)",
                    Location(str(STATE_FILE), self.state.lines.get(host), host=host),
                    severity=Severity.LOW)


def watch_for(project: Project, config_file: str, wanted: bool | None) -> Watch | None:
    """The drift hook: None when off. ``wanted`` None: on when the state file exists;
    True: required (``scan --drift``)."""
    if wanted is False:
        return None
    state = read(project.root)
    if state is None:
        if wanted:
            raise UsageError(f"--drift: {STATE_FILE} does not exist",
                             hint="approve the hosts' current state first: "
                             "`kamal-secure snapshot --approve`")
        return None
    return Watch(state, project.root, config_file)
