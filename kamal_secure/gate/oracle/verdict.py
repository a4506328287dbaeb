"""The verdict process: answers the guard inside the real kamal, one JSON line per question.

Questions: ``hello`` (the guard is loaded), ``command`` (the leaf Thor command Kamal
dispatched, with the config as Kamal holds it and the hosts it will reach, before
the command's body runs) and ``connect`` (hosts not yet approved, before Kamal
connects). Answers: ``{"allow": true, "approved": [...]}`` or ``{"allow": false,
"code": N}``. The checks are the gate's own: static rules on Kamal's resolved config,
live host checks on exactly the hostname, port, user and keys net-ssh will use,
waivers, baseline, break glass and exit codes as for ``kamal-secure <command>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.inventory import (
    HOST_NAME,
    USER_NAME,
    Inventory,
    SshSettings,
    Target,
    build_inventory,
    parse_jump,
)
from kamal_secure.config.load import Origin, Project, load_project
from kamal_secure.errors import (
    EXIT_INCOMPLETE,
    CheckIncomplete,
    KamalSecureError,
    report_crash,
    say_error,
)
from kamal_secure.gate.kamal import GATED_TOP, UNGATED_SUB, UNGATED_TOP
from kamal_secure.report.model import Report

if TYPE_CHECKING:
    from kamal_secure.policy.file import HostPolicy

# Kamal's Thor classes and the command word each one stands for ("" is the top level).
GROUP_OF_CLASS = {
    "Kamal::Cli::Main": "",
    "Kamal::Cli::Accessory": "accessory",
    "Kamal::Cli::App": "app",
    "Kamal::Cli::Build": "build",
    "Kamal::Cli::Lock": "lock",
    "Kamal::Cli::Proxy": "proxy",
    "Kamal::Cli::Prune": "prune",
    "Kamal::Cli::Registry": "registry",
    "Kamal::Cli::Secrets": "secrets",
    "Kamal::Cli::Server": "server",
}
MAX_LINE = 16 * 1024 * 1024


def read_only(group_class: str, name: str) -> bool:
    """The same read-only set as the fast path, for the command Thor really dispatched."""
    group = GROUP_OF_CLASS.get(group_class)
    if group is None or not name:
        return False
    if name == "help":
        return True
    if group == "":
        return name in UNGATED_TOP and name not in GATED_TOP
    if group in UNGATED_TOP:  # e.g. secrets: local only
        return True
    return name in UNGATED_SUB.get(group, set())


def overlay(kamal: Any, ours: Any) -> Any:
    """Kamal's resolved config, except where our masked parse shows a value ERB produced.

    Kamal's tree decides structure (merge keys, symbol keys, ERB-added lines); a value
    that ERB rendered (often a secret from ENV) keeps our mask, so that no rule mistakes
    it for a literal and nothing prints it."""
    if isinstance(kamal, dict):
        mine = ours if isinstance(ours, dict) else {}
        return {key: overlay(value, mine.get(key)) for key, value in kamal.items()}
    if isinstance(kamal, list):
        mine_list = ours if isinstance(ours, list) else []
        return [overlay(v, mine_list[i] if i < len(mine_list) else None)
                for i, v in enumerate(kamal)]
    return ours if is_dynamic(ours) else kamal


class Malformed(CheckIncomplete):
    """The guard sent something we cannot trust: refuse (exit 3)."""


def _str(record: dict[str, Any], key: str, pattern: Any = None) -> str:
    value = record.get(key)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise Malformed(f"the guard sent an unusable {key} {value!r}")
    return value


@dataclass(frozen=True)
class Resolved:
    """One host as net-ssh will reach it."""

    host: str  # as Kamal names it
    ssh: SshSettings
    hostname: str


def resolved_host(record: Any) -> Resolved:
    if not isinstance(record, dict):
        raise Malformed("the guard sent a host that is not an object")
    host = _str(record, "host")
    hostname = _str(record, "hostname", HOST_NAME)
    user = _str(record, "user", USER_NAME)
    port = record.get("port")
    keys = record.get("keys")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise Malformed(f"the guard sent an unusable port {port!r} for {host}")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise Malformed(f"the guard sent unusable keys for {host}")
    proxy = record.get("proxy")
    command = record.get("proxy_command")
    if proxy is not None and (not isinstance(proxy, str) or "," in proxy):
        raise Malformed(f"{host}: a multi-hop or unusable ProxyJump {proxy!r} is not supported")
    if command is not None and not isinstance(command, str):
        raise Malformed(f"the guard sent an unusable proxy command for {host}")
    ssh = SshSettings(user=user, port=port, proxy=parse_jump(proxy) if proxy else None,
                      proxy_command=command or None, keys=tuple(keys),
                      keys_only=record.get("keys_only") is True, config_files=())
    return Resolved(host, ssh, hostname)


class Speculation:
    """While Kamal boots: check the hosts our own model expects, and load the checks.

    The host check starts first, as soon as kamal-secure says the real kamal is being
    exec'd under the guard (``go``: a pipe it writes "go" to; end of file means no), and
    the checks for the command are imported while the hosts answer. A result is used
    only for a host whose hostname, port, user, keys and proxy, as Kamal resolved them,
    are exactly those checked here; anything else is checked after Kamal's answer. Only
    successes are kept (a failure is checked again)."""

    def __init__(self, environ: dict[str, str], args: list[str], go: int | None = None
                 ) -> None:
        self.done = threading.Event()
        self.warm = threading.Event()  # the checks are imported (or failed to be)
        self.facts: dict[tuple[SshSettings, str], Any] = {}
        threading.Thread(target=self._run, args=(environ, args, go), daemon=True).start()

    def _run(self, environ: dict[str, str], args: list[str], go: int | None) -> None:
        found: dict[tuple[SshSettings, str], Any] = {}
        checking: threading.Thread | None = None
        try:
            with contextlib.suppress(Exception):  # speculation: the real check happens anyway
                checking = self._start(environ, args, go, found)
                _warm_up()
        finally:
            self.warm.set()
            if checking is not None:
                checking.join()
            self.facts = found
            self.done.set()

    def _start(self, environ: dict[str, str], args: list[str], go: int | None,
               found: dict[tuple[SshSettings, str], Any]) -> threading.Thread | None:
        """The check of the hosts our model expects, started in a thread; None if none."""
        from kamal_secure.audit.hosts import OFFLINE_ENV
        from kamal_secure.gate.kamal import Invocation
        from kamal_secure.policy.file import load_policy
        from kamal_secure.remote.fleet import check_fleet
        from kamal_secure.remote.ssh_config import resolve

        if environ.get(OFFLINE_ENV) == "1":
            return None
        inv = Invocation(args)
        project = load_project(inv.config_file, inv.destination)
        inventory = build_inventory(project, inv.hosts, inv.roles)
        policy = load_policy().hosts
        ssh = replace(inventory.ssh, config_files=())
        targets: dict[str, Target] = {}
        for target in inventory.targets:
            if not target.dynamic:
                hostname, _ = resolve(target.name, inventory.ssh)
                targets.setdefault(hostname, Target(hostname, target.origin))
        if not targets or len(targets) > policy.concurrency or not _told_to_go(go):
            return None

        def check() -> None:
            try:
                result = check_fleet(Inventory(tuple(targets.values()), ssh), project.root,
                                     policy.concurrency, policy.timeout, progress=False,
                                     allow_proxy_command=True)  # Kamal runs it right after us
                for checked, facts in result.facts:
                    found[(ssh, checked.name)] = facts
            except BaseException:  # speculation only: the real check happens regardless
                found.clear()

        checking = threading.Thread(target=check, daemon=True)
        checking.start()
        return checking


def _told_to_go(go: int | None) -> bool:
    """True once kamal-secure wrote "go" (it is exec'ing the guarded kamal); False at end of
    file (the kamal cannot be guarded, or kamal-secure is gone). No pipe: go."""
    if go is None:
        return True
    data = b""
    try:
        while len(data) < 2:
            chunk = os.read(go, 2 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(go)
    return data == b"go"


def _warm_up() -> None:
    """Import what the verdict on the command needs, while Kamal boots."""
    from kamal_secure.audit import hosts, static  # noqa: F401
    from kamal_secure.gate import run  # noqa: F401
    from kamal_secure.policy import waivers  # noqa: F401
    from kamal_secure.report import text  # noqa: F401


@dataclass
class Server:
    environ: dict[str, str]
    speculation: Speculation | None = None
    project: Project | None = None
    command: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    offline: bool = False

    def handle(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise Malformed("the guard sent a message that is not an object")
        kind = message.get("type")
        if kind == "hello":
            return {"ok": True}
        if kind == "command":
            return self.on_command(message)
        if kind == "connect":
            return self.on_connect(message)
        raise Malformed(f"the guard sent an unknown question {kind!r}")

    def on_command(self, message: dict[str, Any]) -> dict[str, Any]:
        group, name = str(message.get("group", "")), str(message.get("name", ""))
        word = GROUP_OF_CLASS.get(group, group)
        self.command = [w for w in (word, name) if w] or ["<no command>"]
        if read_only(group, name):
            return {"allow": True, "readonly": True}
        config_file = message.get("config_file")
        destination = message.get("destination")
        raw = message.get("raw_config")
        if not isinstance(config_file, str) or not isinstance(raw, dict):
            raise Malformed("the guard sent no config file or config")
        if destination is not None and not isinstance(destination, str):
            raise Malformed("the guard sent an unusable destination")
        options = message.get("options")
        self.options = {k: str(v) for k, v in options.items() if k != "version"} \
            if isinstance(options, dict) else {}
        project = load_project(config_file, destination or None)
        project.data = overlay(raw, project.data)
        self.project = project
        hosts = [resolved_host(r) for r in message.get("hosts") or []]
        from kamal_secure.gate.certificate import mint_for, needs_pty

        # certificate mode: before our live checks and Kamal log in with the deploy key
        minted = mint_for([h.ssh for h in hosts], self.command, needs_pty(
            self.command, isinstance(options, dict) and options.get("interactive") is True),
            self.environ)
        reply: dict[str, Any] = {}
        try:
            reply = self.verdict(hosts, static=True)
        finally:
            if minted is not None and reply.get("allow") is not True:
                minted.unlink(missing_ok=True)  # refused: the certificate goes too
        return reply

    def on_connect(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.project is None:
            raise Malformed("the guard asked about hosts before any command was checked")
        hosts = [resolved_host(r) for r in message.get("hosts") or []]
        return self.verdict(hosts, static=False)

    def verdict(self, hosts: list[Resolved], static: bool) -> dict[str, Any]:
        from kamal_secure.audit.hosts import OFFLINE_ENV, merge
        from kamal_secure.audit.static import static_report
        from kamal_secure.gate.run import Verdict, gate_settings, proceed
        from kamal_secure.policy import waivers
        from kamal_secure.report import text

        assert self.project is not None
        if self.speculation is not None:  # its imports and ours must not interleave
            self.speculation.warm.wait()
        environ = self.environ
        policy, fail_on, known, skip = gate_settings(environ)
        offline = environ.get(OFFLINE_ENV) == "1"
        if offline and not self.offline:
            text.make_console(sys.stderr).print(
                f"[bold white on red] OFFLINE [/] {OFFLINE_ENV}=1: the hosts' sshd settings and "
                "host keys were NOT checked")
        self.offline = offline
        report = static_report(self.project, policy.settings()) if static else Report(
            sources=[(s.name, s.masked.text) for s in self.project.sources])
        if not offline and hosts:
            merge(report, audit_resolved(self.project, hosts, policy.hosts, self.speculation))
        report = waivers.apply(report, policy, report.sources, baseline=known)
        reason = skip.strip() if skip else None
        verdict = Verdict(report, fail_on, report.exit_code(fail_on), reason,
                          hosts_checked=not offline)
        if not proceed(verdict, "running kamal", self.command, self.options):
            return {"allow": False, "code": verdict.code,
                    "message": f"refused to run `kamal {' '.join(self.command)}` (see the "
                               "findings above; `kamal-secure scan` repeats them)"}
        reply: dict[str, Any] = {"allow": True, "approved": [h.host for h in hosts]}
        if verdict.code == 0 and not offline and static:
            reply["env"] = self.digest_env(hosts)
        return reply

    def digest_env(self, hosts: list[Resolved]) -> dict[str, str]:
        """Tell Kamal's hooks (our pre-connect/pre-deploy) which hosts were just checked."""
        from kamal_secure.gate.digest import DIGEST_ENV, HOSTS_ENV, gate_digest

        assert self.project is not None
        names = sorted({h.host for h in hosts})
        return {HOSTS_ENV: ",".join(names),
                DIGEST_ENV: gate_digest(str(self.project.config_path),
                                        self.project.destination, names)}


def audit_resolved(project: Project, hosts: list[Resolved], policy: HostPolicy,
                   speculation: Speculation | None = None) -> Report:
    """The live host checks on exactly the hosts, users, ports and keys Kamal resolved."""
    from kamal_secure.audit.hosts import fleet_report
    from kamal_secure.config.inventory import local_registry
    from kamal_secure.facts.keys import gather_ca
    from kamal_secure.policy.file import load_policy
    from kamal_secure.remote.fleet import FleetResult, check_fleet

    # certificate mode as mint_for sees it (the same policy file)
    ca = gather_ca(load_policy().certificates.ca, project.root)
    origins = _origins(project)
    groups: dict[SshSettings, list[Target]] = {}
    for host in hosts:
        origin = origins.get(host.host) or Origin(
            project.sources[0].name if project.sources else str(project.config_path), 1, 1)
        groups.setdefault(host.ssh, []).append(Target(host.hostname, origin))
    from kamal_secure.audit.drift import watch_for

    # drift watch (issue 18): when .kamal/secure-state.json exists, every host is read again
    # on its own session with the drift facts (the speculated facts have none)
    watch = watch_for(project, str(project.config_path), None)
    known: dict[tuple[SshSettings, str], Any] = {}
    if speculation is not None:
        speculation.done.wait()
        known = speculation.facts if watch is None else {}
    report = Report()
    everything = FleetResult()
    for ssh, targets in groups.items():
        unique = list({t.name: t for t in targets}.values())
        done = FleetResult(facts=[(t, known[(ssh, t.name)]) for t in unique
                                  if (ssh, t.name) in known])
        rest = tuple(t for t in unique if (ssh, t.name) not in known)
        if rest:
            result = check_fleet(Inventory(rest, ssh), project.root, policy.concurrency,
                                 policy.timeout, progress=None, allow_proxy_command=True,
                                 collect=watch.collect if watch is not None else None)
            done.facts.extend(result.facts)
            done.problems.extend(result.problems)
            everything.collected.update(result.collected)
        everything.facts.extend(done.facts)
        fleet_report(done, policy, report, local_registry(project), ca)
    if watch is not None:  # Kamal may target a subset (-h/-r): approved hosts it skips are fine
        found, checked = watch.findings(everything, [t for t, _ in everything.facts], True)
        report.findings.extend(found)
        report.checked.extend(checked)
    return report


def _origins(project: Project) -> dict[str, Origin]:
    try:
        return {t.name: t.origin for t in build_inventory(project).targets}
    except KamalSecureError:
        return {}


def serve(sock: socket.socket, environ: dict[str, str], args: list[str],
          go: int | None = None) -> None:
    """Answer the guard until kamal exits (end of file on the socket). ``go``: see
    :class:`Speculation`."""
    stream = sock.makefile("rwb")
    server = Server(environ, Speculation(environ, args, go))
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return
        try:
            reply = server.handle(json.loads(line))
        except KamalSecureError as err:
            _say(err)
            reply = {"allow": False, "code": err.exit_code}
        except ValueError:
            reply = {"allow": False, "code": EXIT_INCOMPLETE,
                     "message": "the guard sent a line that is not JSON"}
        except Exception as err:  # the verdict on an internal error is: no
            reply = {"allow": False, "code": report_crash(err)}
        stream.write(json.dumps(reply).encode("utf-8") + b"\n")
        stream.flush()


def _say(err: KamalSecureError) -> None:
    say_error(err)
    sys.stderr.flush()
