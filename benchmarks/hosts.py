"""Host-check speed on loopback sshd instances (ratios, not a timed test).

Prints wall time for 1, 10 and 30 hosts and t(30)/t(1) (goal <= 3 on 2 cores),
SSH connections per host as counted by the hosts' own sshd logs (goal <= 2),
and, when ``ssh-audit`` is installed in this venv, our time per host against
``ssh-audit --skip-rate-test`` on the same host (goal <= 0.5). Needs root and
/usr/sbin/sshd (the test suite's harness, testing/sshd.py); connects only
to 127.55.201.x.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kamal_secure.audit.hosts import audit_hosts
from testing.sshd import (
    DEPLOY_USER,
    HARDENED,
    Host,
    Lab,
    can_run_sshd,
    ensure_user,
    keygen,
    remove_user,
)

SIZES = (1, 10, 30)
ROUNDS = 5


def write_project(root: Path, key: Path, hosts: list[Host]) -> Path:
    (root / "config").mkdir(parents=True, exist_ok=True)
    listed = "".join(f"    - {h.addr}\n" for h in hosts)
    (root / "config" / "deploy.yml").write_text(
        f"service: bench\nimage: acme/bench\nservers:\n  web:\n{listed}"
        f"ssh:\n  user: {DEPLOY_USER}\n  keys: [\"{key}\"]\n  keys_only: true\n"
        "  config: false\n")
    return root


def connections(hosts: list[Host]) -> int:
    return sum(h.log().count("Connection from") for h in hosts)


def timed_scan(app: Path, hosts: list[Host]) -> tuple[float, float, float]:
    before = connections(hosts)
    cpu = os.times()
    started = time.perf_counter()
    report = audit_hosts("config/deploy.yml", None, root=app, progress=False)
    elapsed = time.perf_counter() - started
    after = os.times()
    ours = after.user - cpu.user + after.system - cpu.system
    if report.problems:
        raise SystemExit(f"benchmark hosts not checkable: {report.problems[:2]}")
    time.sleep(0.2)  # let sshd flush its log lines
    return elapsed, (connections(hosts) - before) / len(hosts), ours


def ssh_audit_time(host: Host) -> float | None:
    tool = Path(sys.executable).with_name("ssh-audit")
    if not tool.exists():
        return None
    runs = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        done = subprocess.run([str(tool), "--skip-rate-test", host.addr], capture_output=True,
                              text=True, check=False, timeout=60)
        runs.append(time.perf_counter() - started)
        if "(gen) banner" not in done.stdout:  # exit status is non-zero on any warning
            raise SystemExit(f"ssh-audit did not audit {host.addr}: {done.stdout[-300:]}")
    return statistics.median(runs)


def start_hosts(lab: Lab, public: str) -> list[Host]:
    return [lab.start(f"127.55.201.{i + 2}", HARDENED,
                      authorized={DEPLOY_USER: public}) for i in range(max(SIZES))]


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
        hosts = start_hosts(lab, public)
        (home / ".ssh" / "known_hosts").write_text("".join(h.known_line() for h in hosts))
        report(base, key, hosts)
    finally:
        lab.stop_all()


def report(base: Path, key: Path, hosts: list[Host]) -> None:
    print(f"host checks on loopback sshd, {os.cpu_count()} CPU(s), median of {ROUNDS} runs")
    medians: dict[int, float] = {}
    for size in SIZES:
        app = write_project(base / f"app-{size}", key, hosts[:size])
        runs = [timed_scan(app, hosts[:size]) for _ in range(ROUNDS)]
        medians[size] = statistics.median(r[0] for r in runs)
        per_host = max(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        print(f"  {size:>2} host(s): {medians[size] * 1000:7.0f} ms wall, "
              f"{per_host:.1f} SSH connection(s) per host, "
              f"kamal-secure's own CPU {cpu * 1000:.0f} ms")
    ratio = medians[30] / medians[1]
    print(f"  t(30)/t(1) = {ratio:.2f} (goal <= 3)")
    audit = ssh_audit_time(hosts[0])
    if audit is None:
        print("  ssh-audit not installed in this venv (make bench installs it): comparison skipped")
    else:
        print(f"  ssh-audit --skip-rate-test: {audit * 1000:.0f} ms per host; ours "
              f"{medians[1] * 1000:.0f} ms; ratio {medians[1] / audit:.2f} (goal <= 0.5)")


def main() -> int:
    why = can_run_sshd()
    if why is not None:
        print(f"benchmarks/hosts.py skipped: {why}")
        return 0
    existed = subprocess.run(["id", DEPLOY_USER], capture_output=True,
                             check=False).returncode == 0
    ensure_user(DEPLOY_USER)
    base = Path(tempfile.mkdtemp(prefix="kamal-secure-bench-"))
    try:
        measure(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not existed:
            remove_user(DEPLOY_USER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
