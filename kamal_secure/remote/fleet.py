"""All hosts in parallel: one verified connection each, facts gathered, problems kept apart.

:func:`each_host.for_each_host` with 30 at a time by default (like Kamal's sshkit), a
deadline per host (socket, handshake, login and every command time out; a host still
busy at the deadline has its connection closed), its progress bar only when stderr is a
terminal. One host failing never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.inventory import Inventory, SshSettings, Target
from kamal_secure.errors import CheckIncomplete
from kamal_secure.facts.host import HostFacts, Unchecked
from kamal_secure.remote import hostkeys, session, sshd
from kamal_secure.remote.each_host import for_each_host

if TYPE_CHECKING:
    import paramiko

# keys (a certificate loaded) to log in with before ssh.keys; certificate mode's
# ``gate/certificate.py: certify_in_memory`` makes them for the given ssh settings
LoginKeys = Sequence["paramiko.PKey"]
Certify = Callable[[SshSettings], LoginKeys]


@dataclass(frozen=True)
class HostProblem:
    target: Target
    reason: Unchecked  # rules/host_access.py names the rule
    message: str
    hint: str | None = None


@dataclass
class FleetResult:
    facts: list[tuple[Target, HostFacts]] = field(default_factory=list)
    problems: list[HostProblem] = field(default_factory=list)
    connections: int = 0
    execs: int = 0
    collected: dict[str, object] = field(default_factory=dict)  # target name -> collect()


# Optional extra reading on each host's session once its facts are in (drift watch).
Collect = Callable[[session.Session, HostFacts], object]


def check_fleet(inventory: Inventory, root: Path, concurrency: int = 30,
                timeout: float = 20.0, progress: bool | None = None,
                allow_proxy_command: bool = False,
                collect: Collect | None = None,
                first_keys: LoginKeys = ()) -> FleetResult:
    """``first_keys``: offered before ``ssh.keys`` (certificate mode's in-memory
    certificate for ``scan``)."""
    connector = session.Connector(
        inventory.ssh, hostkeys.load_known_hosts(hostkeys.known_hosts_files(root)),
        [*first_keys, *session.load_login_keys(inventory.ssh)], timeout,
        allow_proxy_command=allow_proxy_command)
    result = FleetResult()
    targets = list(inventory.targets)
    if not targets:
        return result
    waves = -(-len(targets) // max(1, min(concurrency, len(targets))))
    budget = (timeout * 3 + 5) * waves  # every host's deadline
    try:
        outcomes = for_each_host(
            targets, lambda t: _one(connector, t, collect, result.collected), concurrency,
            name=lambda t: t.name, title="checking hosts", past="checked", progress=progress,
            budget=budget)
    finally:
        for transport in list(connector.opened):  # unblocks any thread still waiting
            transport.close()
    for outcome in outcomes:
        if not outcome.finished:
            result.problems.append(HostProblem(outcome.host, "unreachable",
                                               f"no answer within {budget:.0f}s"))
            continue
        facts, problem, execs = outcome.result()
        result.execs += execs
        if facts is not None:
            result.facts.append((outcome.host, facts))
        if problem is not None:
            result.problems.append(problem)
    result.connections = len(connector.opened)
    return result


Outcome = tuple[HostFacts | None, HostProblem | None, int]


def _one(connector: session.Connector, target: Target, collect: Collect | None = None,
         collected: dict[str, object] | None = None) -> Outcome:
    ssh = connector.ssh
    if target.dynamic or is_dynamic(ssh.user):
        what = "host name" if target.dynamic else "ssh.user"
        return None, HostProblem(target, "unreachable", f"the {what} comes from ERB, which "
                                 "kamal-secure never runs, so this host cannot be checked"), 0
    try:
        sess = connector.open_host(target.name)
    except CheckIncomplete as err:
        return None, HostProblem(target, getattr(err, "reason", "unreachable"), err.message,
                                 err.hint), 0
    except Exception as err:  # any other failure of one host must not stop the fleet
        return None, HostProblem(target, "unreachable", f"cannot connect: {_describe(err)}"), 0
    try:
        facts = _facts(sess, target, ssh)
        if collect is not None and collected is not None:
            collected[target.name] = collect(sess, facts)
        return facts, None, sess.execs
    except Exception as err:  # a host that misbehaves mid-way is incomplete, not a crash
        return None, HostProblem(target, "unreachable",
                                 f"lost the host while reading: {_describe(err)}"), 0
    finally:
        sess.close()


def _describe(err: Exception) -> str:
    return getattr(err, "message", None) or str(err) or type(err).__name__


def _facts(sess: session.Session, target: Target, ssh: SshSettings) -> HostFacts:
    gathered = sshd.gather(sess, ssh.user)
    return HostFacts(
        name=target.name, address=sess.endpoint.hostname, port=sess.endpoint.port,
        user=ssh.user, offered=sess.offered, sshd=gathered.sshd,
        host_key=hostkeys.host_key(sess.host_key),
        authorized_keys=gathered.authorized_keys,
        trusted_ca=gathered.trusted_ca, revoked_keys=gathered.revoked_keys,
        deploy_fingerprints=deploy_fingerprints(ssh),
        notes=tuple(gathered.notes),
    )


def deploy_fingerprints(ssh: SshSettings) -> tuple[str, ...]:
    out = []
    for path in ssh.keys:
        found = session.public_fingerprint(Path(path).expanduser())
        if found is not None:
            out.append(found)
    return tuple(out)
