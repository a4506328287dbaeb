"""Drift watch's cost on top of the host checks, on loopback sshd instances (a ratio).

Ten hosts, median of 5 runs each: the host checks alone, then with the comparison
against an approved .kamal/secure-state.json (two more commands on the same
connection per host). Prints t(drift)/t(plain) and SSH connections per host counted
in the hosts' own sshd logs (goal: 1 for both). Needs root and /usr/sbin/sshd;
connects only to 127.55.202.x.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.hosts import connections, write_project
from kamal_secure.audit.hosts import audit_hosts
from kamal_secure.commands import dispatch
from testing.sshd import DEPLOY_USER, HARDENED, Host, Lab, can_run_sshd, ensure_user, keygen

HOSTS = 10
ROUNDS = 5


def timed(app: Path, hosts: list[Host], drift: bool) -> tuple[float, float]:
    before = connections(hosts)
    started = time.perf_counter()
    report = audit_hosts("config/deploy.yml", None, root=app, progress=False, drift=drift)
    elapsed = time.perf_counter() - started
    if report.problems:
        raise SystemExit(f"benchmark hosts not checkable: {report.problems[:2]}")
    time.sleep(0.2)  # let sshd flush its log lines
    return elapsed, (connections(hosts) - before) / len(hosts)


def measure(base: Path) -> None:
    home = base / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "kamal_deploy_key"
    public = keygen(key)
    os.environ["HOME"] = str(home)
    os.environ.pop("SSH_AUTH_SOCK", None)
    (base / "hosts").mkdir(mode=0o755)
    base.chmod(0o755)
    lab = Lab(base / "hosts")
    try:
        hosts = [lab.start(f"127.55.202.{i + 2}", HARDENED, authorized={DEPLOY_USER: public})
                 for i in range(HOSTS)]
        (home / ".ssh" / "known_hosts").write_text("".join(h.known_line() for h in hosts))
        app = write_project(base / "app", key, hosts)
        os.chdir(app)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if dispatch("snapshot", ["--approve"]) != 0:
                raise SystemExit("snapshot --approve failed on the benchmark hosts")
        plain = [timed(app, hosts, False) for _ in range(ROUNDS)]
        drift = [timed(app, hosts, True) for _ in range(ROUNDS)]
    finally:
        lab.stop_all()
    t_plain = statistics.median(r[0] for r in plain)
    t_drift = statistics.median(r[0] for r in drift)
    print(f"drift watch on {HOSTS} loopback sshd hosts, {os.cpu_count()} CPU(s), "
          f"median of {ROUNDS} runs")
    print(f"  host checks alone: {t_plain * 1000:7.0f} ms, "
          f"{max(r[1] for r in plain):.1f} SSH connection(s) per host")
    print(f"  with --drift:      {t_drift * 1000:7.0f} ms, "
          f"{max(r[1] for r in drift):.1f} SSH connection(s) per host")
    print(f"  t(drift)/t(plain) = {t_drift / t_plain:.2f}")


def main() -> int:
    why = can_run_sshd()
    if why is not None:
        print(f"benchmarks/drift.py skipped: {why}")
        return 0
    ensure_user(DEPLOY_USER)
    base = Path(tempfile.mkdtemp(prefix="kamal-secure-bench-drift-"))
    try:
        measure(base)
    finally:
        os.chdir("/")
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
