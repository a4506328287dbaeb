"""`ca rotate` killed at every kill point, then --abort or --resume killed again, over three
real sshd hosts that trust only the CA (no static key).

Kill points are enumerated (``KAMAL_SECURE_TEST_KILL_POINT=N``: every journal write, every
policy write, every host file write). After every run, killed or not, the OpenSSH client
checks on every host, with certificates made by ssh-keygen: the CA the policy names signs a
certificate that logs in, and some CA key we hold does (never neither CA). Every scenario
is then driven to an end: rotated (the new CA only) or aborted (the old CA only, the policy
as it was). By default every fifth kill point; ``KAMAL_SECURE_FULL_KILLS=1``: every one,
each with both follow-ups.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pytest

from testing.ca_hosts import ca_host, cert_logs_in, line, trust_only, trusted
from testing.cli import run_cli
from testing.live import host_project
from testing.sshd import Client, Host, Lab, keygen

pytestmark = pytest.mark.sshd
JOURNAL = Path(".kamal/secure-ca-rotation.json")
FULL = os.environ.get("KAMAL_SECURE_FULL_KILLS") == "1"


class Scenario:
    """One rotation: its own CA directory and project; the shared hosts trust its CA."""

    def __init__(self, name: str, hosts: list[Host], client: Client, tmp: Path,
                 problems: list[str]) -> None:
        self.name, self.hosts, self.client, self.tmp = name, hosts, client, tmp / name
        self.problems = problems
        self.cas = client.home / name
        self.old = self.cas / "kamal_ca"
        keygen(self.old, "kamal-secure-ca:old")
        for host in hosts:
            trust_only(host, self.old.with_name("kamal_ca.pub"))
        self.app = host_project(self.tmp / "app", client, [h.addr for h in hosts])
        self.policy = self.app / ".kamal" / "secure.yml"
        self.policy.write_text(f"hosts:\n  timeout: 5\ncertificates:\n  ca: {self.old}\n")
        self.before = self.policy.read_text()
        self.runs = 0

    def step(self, *args: str, kill: int | None = None) -> int:
        env = {"HOME": str(self.client.home)}
        if kill is not None:
            env["KAMAL_SECURE_TEST_KILL_POINT"] = str(kill)
        done = run_cli(["ca", "rotate", *args], self.app, env, timeout=300)
        self.runs += 1
        label = f"{self.name} {' '.join(args)} kill={kill}"
        assert done.code in (0, 3, 99), f"{label}: {done.code} {done.stdout}{done.stderr}"
        self.check(label)
        return done.code

    def named(self) -> Path:
        match = re.search(r"^  ca: (\S+)", self.policy.read_text(), re.MULTILINE)
        assert match, self.policy.read_text()
        return Path(match.group(1)).expanduser()

    def held(self) -> list[Path]:
        return [p for p in self.cas.iterdir() if p.suffix != ".pub" and ".retired-" not in p.name]

    def check(self, label: str) -> None:
        for host in self.hosts:
            where = self.tmp / f"run{self.runs}"
            if not cert_logs_in(self.client, self.named(), host, where):
                self.problems.append(f"{label}: the policy's CA is refused by {host.addr}")
            if not any(cert_logs_in(self.client, ca, host, where) for ca in self.held()):
                self.problems.append(f"{label}: {host.addr} accepts no CA we hold")

    def finish(self, first: str) -> str:
        other = "--abort" if first == "--resume" else "--resume"
        for args in (first, other, first):
            if not (self.app / JOURNAL).exists():
                break
            self.step(args)
        assert not (self.app / JOURNAL).exists(), f"{self.name}: still in progress"
        if self.policy.read_text() == self.before:
            assert self.held() == [self.old], f"{self.name}: aborted, keys left over"
            want = line(self.old.with_name("kamal_ca.pub"))
            outcome = "aborted"
        else:
            assert not self.old.exists()
            want = line(self.named().with_name(self.named().name + ".pub"))
            outcome = "rotated"
        for host in self.hosts:
            assert trusted(host) == [want], f"{self.name} {outcome}: {host.addr}"
        return outcome


def test_every_kill_point_then_abort_or_resume_never_locks_out(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    first = client.home / "first_ca"
    keygen(first, "kamal-secure-ca:first")
    hosts = [ca_host(lab, client, first.with_name("first_ca.pub")) for _ in range(3)]
    problems: list[str] = []
    outcomes: dict[str, int] = {}
    inner = itertools.cycle(range(1, 9))  # where the follow-up run is killed in turn
    point, stride, scenarios, runs = 0, 1 if FULL else 5, 0, 0
    while True:
        point += stride
        follow_ups = ["--abort", "--resume"] if FULL else [("--abort", "--resume")[point % 2]]
        ended = False
        for follow in follow_ups:
            s = Scenario(f"k{point}{follow[2:4]}", hosts, client, tmp_path, problems)
            scenarios += 1
            if s.step("--yes", kill=point) == 0:  # past the last kill point: it finished
                ended = True
                follow = "--resume"
            else:
                s.step(follow, kill=next(inner))
            outcome = s.finish(follow)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            runs += s.runs
            if ended:
                break
        if ended:
            break
        assert point < 80, "more kill points than expected"
    print(f"\nca rotate kill test: kill points {stride}..{point - stride} every {stride}, "
          f"{scenarios} scenarios, {runs} runs, {len(problems)} lockouts, outcomes {outcomes}")
    assert point > 20  # the kill points are really there (3 hosts: 3 per host and step)
    assert outcomes.get("aborted"), outcomes
    assert outcomes.get("rotated"), outcomes
    assert not problems, "\n".join(problems)
