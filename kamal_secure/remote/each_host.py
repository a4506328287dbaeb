"""The one loop over hosts: ``for_each_host(hosts, work, concurrency)``.

Every command that does something on each host goes through here: the host checks
(``scan``, the gate, hooks, ``snapshot``), ``authorize``, ``harden``, ``pin-hosts`` and
``rotate-key``. Results come back in the order of ``hosts`` whatever order the hosts
finish in; an exception raised by ``work`` for one host is kept in that host's outcome
(never lost, never stopping the others unless ``stop_on_error``); one progress bar, on
stderr and only on a terminal. No paramiko here: importing this module is cheap.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

H = TypeVar("H")
R = TypeVar("R")
Tick = Callable[[str | None], None]
_bar = threading.Lock()  # held while a progress bar shows


class NotRun(Exception):
    """The host's work never finished: the budget ran out, or an earlier host failed."""


@dataclass(frozen=True)
class Outcome(Generic[H, R]):
    host: H
    finished: bool  # False: not started, or no answer within the budget
    value: R | None = None
    error: Exception | None = None

    def result(self) -> R:
        """The value ``work`` returned; the exception it raised is raised again here."""
        if self.error is not None:
            raise self.error
        if not self.finished:
            raise NotRun("the work on this host did not finish")
        return cast(R, self.value)


def for_each_host(hosts: Sequence[H], work: Callable[[H], R], concurrency: int, *,
                  name: Callable[[H], str] = str, title: str = "working on hosts",
                  past: str = "done:", progress: bool | None = None, budget: float | None = None,
                  stop_on_error: bool = False) -> list[Outcome[H, R]]:
    """Run ``work`` on every host, at most ``concurrency`` at once; one outcome per host,
    in the order of ``hosts``.

    ``concurrency`` 1 runs the hosts one after another in the calling thread (a Ctrl-C
    stops the step it is in, as in a plain loop). ``budget``: seconds for the whole run;
    hosts still busy then are left to their threads (the caller closes their connections)
    and come back not finished. ``stop_on_error``: no host is started after one failed
    (in order, when serial). ``progress``: a transient bar on stderr (None: only when
    stderr is a terminal): ``title``, then ``past`` and the name (``name(host)``) of the
    host that finished last."""
    if not hosts:
        return []
    show = sys.stderr.isatty() if progress is None else progress
    # one bar at a time (rich allows one live display): a loop inside another shows none
    if not (show and _bar.acquire(blocking=False)):
        return _loop(hosts, work, concurrency, name, None, budget, stop_on_error)
    try:
        tick = _progress(len(hosts), title, past)
        try:
            return _loop(hosts, work, concurrency, name, tick, budget, stop_on_error)
        finally:
            tick(None)
    finally:
        _bar.release()


def _loop(hosts: Sequence[H], work: Callable[[H], R], concurrency: int,
          name: Callable[[H], str], tick: Tick | None, budget: float | None,
          stop_on_error: bool) -> list[Outcome[H, R]]:
    if concurrency <= 1 and budget is None:
        return _serial(hosts, work, name, tick, stop_on_error)
    return _parallel(hosts, work, concurrency, name, tick, budget, stop_on_error)



def _serial(hosts: Sequence[H], work: Callable[[H], R], name: Callable[[H], str],
            tick: Tick | None, stop_on_error: bool) -> list[Outcome[H, R]]:
    outcomes: list[Outcome[H, R]] = []
    for host in hosts:
        if stop_on_error and any(o.error is not None for o in outcomes):
            outcomes.append(Outcome(host, False))
            continue
        outcomes.append(_run(work, host))
        if tick is not None:
            tick(name(host))
    return outcomes


def _run(work: Callable[[H], R], host: H) -> Outcome[H, R]:
    try:
        return Outcome(host, True, work(host))
    except Exception as err:  # kept for this host; the others go on
        return Outcome(host, True, error=err)


def _parallel(hosts: Sequence[H], work: Callable[[H], R], concurrency: int,
              name: Callable[[H], str], tick: Tick | None, budget: float | None,
              stop_on_error: bool) -> list[Outcome[H, R]]:
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(hosts))))
    found: dict[int, Outcome[H, R]] = {}
    try:
        futures: dict[Future[Outcome[H, R]], int] = {
            pool.submit(_run, work, host): i for i, host in enumerate(hosts)}
        pending = set(futures)
        deadline = None if budget is None else time.monotonic() + budget
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                if future.cancelled():
                    continue
                outcome = future.result()
                found[futures[future]] = outcome
                if tick is not None:
                    tick(name(outcome.host))
                if stop_on_error and outcome.error is not None:
                    for other in pending:
                        other.cancel()
    finally:
        # with a budget, hosts still busy are not waited for (their connections are closed
        # by the caller); without one, every started host finishes before we return
        pool.shutdown(wait=budget is None, cancel_futures=True)
    return [found.get(i, Outcome(host, False)) for i, host in enumerate(hosts)]


def _progress(total: int, title: str, past: str) -> Tick:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from kamal_secure.report.safe import raw, shown

    # rich's own cursor control must reach the terminal; host names are ours to escape
    bar = Progress(console=Console(file=raw(sys.stderr)), transient=True)  # not stdout
    task = bar.add_task(title, total=total)
    bar.start()

    def tick(name: str | None) -> None:
        if name is None:
            bar.stop()
        else:
            bar.update(task, advance=1, description=f"{past} {escape(shown(name))}")

    return tick
