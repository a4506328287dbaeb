"""rotate-key killed at every kill point, then --abort / --resume killed again, over three
real sshd hosts that each have their own authorized_keys (their own ~/.ssh).

Kill points are enumerated, not sampled: every journal write, every deploy.yml write and
every host change is one (``KAMAL_SECURE_TEST_KILL_POINT=N`` stops the process at the Nth),
and a dropped connection is injected between starting a remote write and sending its input
(``KAMAL_SECURE_TEST_DROP_STDIN``). After every run, killed or not, the OpenSSH client
checks the invariant on every host: deploy.yml names a key that logs in, and a key we hold
logs in. The counts of interrupted runs and of lockouts are printed (goal: 0 lockouts).
By default every third kill point is run (alternating --abort and --resume) and two of the
dropped connections; ``KAMAL_SECURE_FULL_KILLS=1`` runs every kill point with both
follow-ups and every dropped connection (about ten minutes on two cores).
"""

from __future__ import annotations

import itertools
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testing.cli import Result, run_cli
from testing.live import USER_FILE, configured_key, host_project, keys_file, logs_in
from testing.sshd import DEPLOY_USER, HARDENED, Client, Host, Lab, keygen, next_addr

pytestmark = pytest.mark.sshd
JOURNAL = Path(".kamal/secure-rotation.json")
FULL = os.environ.get("KAMAL_SECURE_FULL_KILLS") == "1"


@dataclass
class Tally:
    scenarios: int = 0
    runs: int = 0
    interrupted: int = 0
    lockouts: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def run(app: Path, home: Path, *args: str, kill: int | None = None,
        drop: int | None = None) -> Result:
    env = {"HOME": str(home)}
    if kill is not None:
        env["KAMAL_SECURE_TEST_KILL_POINT"] = str(kill)
    if drop is not None:
        env["KAMAL_SECURE_TEST_DROP_STDIN"] = str(drop)
    return run_cli(["rotate-key", *args], app, env, timeout=300)


class Scenario:
    def __init__(self, name: str, lab_hosts: list[Host], client: Client, tmp: Path,
                 tally: Tally) -> None:
        self.name, self.hosts, self.tally = name, lab_hosts, tally
        keys = client.home / name
        keys.mkdir(mode=0o700)
        key = keys / "kamal_deploy_key"
        public = keygen(key)
        self.client = Client(client.home, key, public)
        entry = pwd.getpwnam(DEPLOY_USER)
        for host in lab_hosts:  # every host starts with only this scenario's key
            keys_file(host).write_text(public + "\n")
            os.chown(keys_file(host), entry.pw_uid, entry.pw_gid)
            keys_file(host).chmod(0o600)
        self.app = host_project(tmp / name, self.client, [h.addr for h in lab_hosts])
        self.before = (self.app / "config" / "deploy.yml").read_text()

    def step(self, *args: str, kill: int | None = None, drop: int | None = None) -> int:
        done = run(self.app, self.client.home, *args, kill=kill, drop=drop)
        self.tally.runs += 1
        if done.code in (98, 99):
            self.tally.interrupted += 1
        label = f"{' '.join(args)} kill={kill} drop={drop}"
        assert done.code in (0, 3, 98, 99), f"{self.name} {label}: {done.code} " \
            f"{done.stdout}{done.stderr}"
        self.check(label)
        return done.code

    def held(self) -> list[Path]:
        return [p for p in self.client.key.parent.iterdir()
                if not p.name.endswith(".pub") and ".retired-" not in p.name]

    def check(self, label: str) -> None:
        named = configured_key(self.app)
        for host in self.hosts:
            if logs_in(named, host, self.client):
                continue  # the named key is one we hold (it exists) and it logs in
            if not any(logs_in(k, host, self.client) for k in self.held() if k != named):
                self.tally.lockouts.append(f"{self.name} after {label}: {host.addr} accepts "
                                           "no key we hold")
            else:
                self.tally.lockouts.append(f"{self.name} after {label}: deploy.yml names "
                                           f"{named.name}, refused by {host.addr}")

    def finish(self, first: str = "--resume") -> None:
        """Drive it to an end (``first``, then the other way); say which."""
        other = "--abort" if first == "--resume" else "--resume"
        for args in ((first,), (other,), (first,)):
            if not (self.app / JOURNAL).exists():
                break
            self.step(*args)
        assert not (self.app / JOURNAL).exists(), f"{self.name}: still in progress"
        text = (self.app / "config" / "deploy.yml").read_text()
        if text == self.before:
            assert self.held() == [self.client.key], f"{self.name}: aborted, keys left over"
            outcome = "aborted"
        else:
            assert configured_key(self.app) != self.client.key
            assert not self.client.key.exists()
            outcome = "rotated"
        self.tally.outcomes[outcome] = self.tally.outcomes.get(outcome, 0) + 1


def three_hosts(lab: Lab, client: Client) -> list[Host]:
    hosts = [lab.start(next_addr(), HARDENED + USER_FILE, own_home=True) for _ in range(3)]
    for host in hosts:
        client.trust(host.known_line())
    return hosts


def test_every_kill_point_then_abort_or_resume_never_locks_out(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    hosts = three_hosts(lab, client)
    tally = Tally()
    inner = itertools.cycle(range(1, 9))  # where the follow-up run is killed in turn
    point, stride = 0, 1 if FULL else 3
    while True:
        point += stride
        follow_ups = ["--abort", "--resume"] if FULL else [("--abort", "--resume")[point % 2]]
        ended = False
        for follow in follow_ups:
            s = Scenario(f"k{point}{follow[2:4]}", hosts, client, tmp_path, tally)
            tally.scenarios += 1
            if s.step("--yes", kill=point) == 0:  # past the last kill point: it finished
                ended = True
                s.finish()
                break
            s.step(follow, kill=next(inner))
            s.finish(follow)
        if ended:
            break
        assert point < 80, "more kill points than expected"
    # the connection drops before the input of an authorized_keys write arrives
    for drop in range(1, 7) if FULL else (2, 5):
        s = Scenario(f"d{drop}", hosts, client, tmp_path, tally)
        tally.scenarios += 1
        s.step("--yes", drop=drop)
        s.finish()
    print(f"\nrotate-key kill test: kill points {stride}..{point - stride} every {stride}, "
          f"{tally.scenarios} scenarios, {tally.runs} runs, {tally.interrupted} interrupted, "
          f"{len(tally.lockouts)} lockouts, outcomes {tally.outcomes}")
    assert point > 10  # the kill points are really there
    assert tally.interrupted > tally.scenarios  # every scenario was interrupted
    assert not tally.lockouts, "\n".join(tally.lockouts)
