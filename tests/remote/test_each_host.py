"""The one loop over hosts: order, errors kept per host, stopping, the budget, the bar."""

from __future__ import annotations

import threading
import time

import pytest

from kamal_secure.remote.each_host import NotRun, for_each_host


def test_results_come_back_in_input_order_whatever_order_hosts_finish_in() -> None:
    delays = {"a": 0.3, "b": 0.0, "c": 0.15, "d": 0.05}

    def work(host: str) -> str:
        time.sleep(delays[host])
        return host.upper()

    outcomes = for_each_host(list(delays), work, 4, progress=False)
    assert [o.host for o in outcomes] == ["a", "b", "c", "d"]
    assert [o.result() for o in outcomes] == ["A", "B", "C", "D"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_an_error_is_kept_for_its_host_and_the_others_still_run(concurrency: int) -> None:
    ran: list[str] = []

    def work(host: str) -> str:
        ran.append(host)
        if host == "b":
            raise ValueError("b is down")
        return host

    outcomes = for_each_host(["a", "b", "c"], work, concurrency, progress=False)
    assert sorted(ran) == ["a", "b", "c"]
    assert outcomes[0].result() == "a"
    assert outcomes[2].result() == "c"
    assert isinstance(outcomes[1].error, ValueError)
    with pytest.raises(ValueError, match="b is down"):
        outcomes[1].result()


def test_serial_runs_in_the_calling_thread_and_stops_at_the_first_failure() -> None:
    threads: list[threading.Thread] = []

    def work(host: str) -> str:
        threads.append(threading.current_thread())
        if host == "b":
            raise RuntimeError("refused")
        return host

    outcomes = for_each_host(["a", "b", "c"], work, 1, progress=False, stop_on_error=True)
    assert threads == [threading.main_thread()] * 2  # c was never started
    assert [o.finished for o in outcomes] == [True, True, False]
    with pytest.raises(NotRun):
        outcomes[2].result()


def test_hosts_still_busy_when_the_budget_ends_come_back_unfinished() -> None:
    release = threading.Event()

    def work(host: str) -> str:
        if host == "slow":
            release.wait(10)
        return host

    started = time.monotonic()
    outcomes = for_each_host(["fast", "slow"], work, 2, progress=False, budget=0.5)
    release.set()
    assert time.monotonic() - started < 5
    assert [o.finished for o in outcomes] == [True, False]
    assert outcomes[0].result() == "fast"


def test_a_loop_inside_a_loop_shows_one_bar(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws as on a terminal

    def inner(host: str) -> str:
        return for_each_host([host], str.upper, 1, progress=True, title="inner")[0].result()

    outcomes = for_each_host(["a", "b"], inner, 1, progress=True, title="outer")
    assert [o.result() for o in outcomes] == ["A", "B"]
    out, err = capsys.readouterr()
    assert out == ""  # the bar is on stderr, never stdout
    assert "outer" in err
    assert "inner" not in err  # two bars on one terminal would overwrite each other
