"""All hosts in parallel: one verified connection each, facts gathered, problems kept apart.

A bounded thread pool (default 30, like Kamal's sshkit), a deadline per host
(socket, handshake, login and every command time out; a host still busy at the
deadline has its connection closed), a rich progress bar only when stderr is a
terminal. One host failing never stops the others.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from kamal_secure.config.erb import is_dynamic
from kamal_secure.config.inventory import Inventory, SshSettings, Target
from kamal_secure.errors import CheckIncomplete
from kamal_secure.facts.host import HostFacts, HostKey
from kamal_secure.remote import hostkeys, session, sshd
from kamal_secure.remote.ssh_config import resolve


@dataclass(frozen=True)
class HostProblem:
    target: Target
    rule: str  # KS801..KS804
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
                collect: Collect | None = None) -> FleetResult:
    connector = session.Connector(
        inventory.ssh, hostkeys.load_known_hosts(hostkeys.known_hosts_files(root)),
        session.load_login_keys(inventory.ssh), timeout,
        allow_proxy_command=allow_proxy_command)
    result = FleetResult()
    targets = list(inventory.targets)
    if not targets:
        return result
    show = sys.stderr.isatty() if progress is None else progress
    workers = max(1, min(concurrency, len(targets)))
    waves = -(-len(targets) // workers)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(_one, connector, t, collect, result.collected): t
                   for t in targets}
        _collect(futures, result, (timeout * 3 + 5) * waves, show)
    finally:
        for transport in list(connector.opened):  # unblocks any thread still waiting
            transport.close()
        pool.shutdown(wait=False, cancel_futures=True)
    result.connections = len(connector.opened)
    order = {t.name: i for i, t in enumerate(targets)}
    result.facts.sort(key=lambda pair: order[pair[0].name])
    result.problems.sort(key=lambda problem: order[problem.target.name])
    return result


Outcome = tuple[HostFacts | None, HostProblem | None, int]


def _collect(futures: dict[Future[Outcome], Target], result: FleetResult, budget: float,
             show: bool) -> None:
    """Gather outcomes until all are in or ``budget`` seconds (every host's deadline) pass."""
    tick = _progress(len(futures)) if show else None
    pending = set(futures)
    deadline = time.monotonic() + budget
    while pending:
        done, pending = wait(pending, timeout=max(0.0, deadline - time.monotonic()),
                             return_when=FIRST_COMPLETED)
        if not done:
            break
        for future in done:
            facts, problem, execs = future.result()
            result.execs += execs
            if facts is not None:
                result.facts.append((futures[future], facts))
            if problem is not None:
                result.problems.append(problem)
            if tick is not None:
                tick(futures[future].name)
    for future in pending:
        result.problems.append(HostProblem(futures[future], "KS801",
                                           f"no answer within {budget:.0f}s"))
    if tick is not None:
        tick(None)


def _progress(total: int) -> Callable[[str | None], None]:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from kamal_secure.report.safe import raw, shown

    # rich's own cursor control must reach the terminal; host names are ours to escape
    bar = Progress(console=Console(file=raw(sys.stderr)), transient=True)  # not stdout
    task = bar.add_task("checking hosts", total=total)
    bar.start()

    def tick(name: str | None) -> None:
        if name is None:
            bar.stop()
        else:
            bar.update(task, advance=1, description=f"checked {escape(shown(name))}")

    return tick


def _one(connector: session.Connector, target: Target, collect: Collect | None = None,
         collected: dict[str, object] | None = None) -> Outcome:
    ssh = connector.ssh
    if target.dynamic or is_dynamic(ssh.user):
        what = "host name" if target.dynamic else "ssh.user"
        return None, HostProblem(target, "KS801", f"the {what} comes from ERB, which "
                                 "kamal-secure never runs, so this host cannot be checked"), 0
    try:
        hostname, port = resolve(target.name, ssh)
        names = [hostkeys.key_name(hostname, port)]
        if target.name != hostname:
            names.append(hostkeys.key_name(target.name, port))
        sess = connector.open(session.Endpoint(hostname, port, ssh.user), names)
    except CheckIncomplete as err:
        return None, HostProblem(target, getattr(err, "rule", "KS801"), err.message,
                                 err.hint), 0
    except Exception as err:  # any other failure of one host must not stop the fleet
        return None, HostProblem(target, "KS801", f"cannot connect: {_describe(err)}"), 0
    try:
        facts = _facts(sess, target, ssh)
        if collect is not None and collected is not None:
            collected[target.name] = collect(sess, facts)
        return facts, None, sess.execs
    except Exception as err:  # a host that misbehaves mid-way is incomplete, not a crash
        return None, HostProblem(target, "KS801",
                                 f"lost the host while reading: {_describe(err)}"), 0
    finally:
        sess.close()


def _describe(err: Exception) -> str:
    return getattr(err, "message", None) or str(err) or type(err).__name__


def _facts(sess: session.Session, target: Target, ssh: SshSettings) -> HostFacts:
    gathered = sshd.gather(sess, ssh.user)
    key = sess.host_key
    return HostFacts(
        name=target.name, address=sess.endpoint.hostname, port=sess.endpoint.port,
        user=ssh.user, offered=sess.offered, sshd=gathered.sshd,
        host_key=HostKey(key.get_name(), key.get_bits(), hostkeys.fingerprint(key)),
        authorized_keys=gathered.authorized_keys,
        deploy_fingerprints=deploy_fingerprints(ssh),
        via=f"{ssh.proxy.user}@{ssh.proxy.host}:{ssh.proxy.port}" if ssh.proxy else None,
        notes=tuple(gathered.notes),
    )


def deploy_fingerprints(ssh: SshSettings) -> tuple[str, ...]:
    out = []
    for path in ssh.keys:
        found = session.public_fingerprint(Path(path).expanduser())
        if found is not None:
            out.append(found)
    return tuple(out)
