"""scan and the gate run the host checks; an unverifiable host stops kamal (exit 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testing.cli import Result, run_cli
from testing.live import host_project
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, next_addr

STANDIN = Path(__file__).resolve().parent.parent / "examples" / "bin" / "kamal"


def run(app: Path, client: Client, *args: str, **env: str) -> Result:
    return run_cli(args, app, {"HOME": str(client.home), "KAMAL_SECURE_KAMAL": str(STANDIN),
                               "KAMAL_SECURE_FAIL_ON": "critical", **env}, timeout=60)


@pytest.mark.sshd
def test_gate_refuses_unknown_host_and_never_execs(lab: Lab, client: Client,
                                                   tmp_path: Path) -> None:
    good, bad = next_addr(), next_addr()
    trusted = lab.start(good, HARDENED, authorized={DEPLOY_USER: client.public})
    lab.start(bad, HARDENED, authorized={DEPLOY_USER: client.public})
    client.trust(trusted.known_line())
    app = host_project(tmp_path / "app", client, [good, bad])
    done = run(app, client, "deploy")
    assert done.code == 3, done.stderr
    assert "stand-in kamal ran" not in done.stdout
    assert f"host {bad}" in done.stderr
    assert "KS802" in done.stderr


@pytest.mark.sshd
def test_gate_passes_hardened_host(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr = next_addr()
    client.trust(lab.start(addr, HARDENED, authorized={DEPLOY_USER: client.public})
                 .known_line())
    app = host_project(tmp_path / "app", client, [addr])
    done = run(app, client, "deploy", "-h", addr)
    assert done.code == 0, done.stderr
    assert "stand-in kamal ran with 3 argument(s): [deploy] [-h]" in done.stdout
    assert "checking hosts" not in done.stderr  # no progress display when not a terminal


@pytest.mark.sshd
def test_scan_hosts_filter_and_offline(lab: Lab, client: Client, tmp_path: Path) -> None:
    addr, other = next_addr(), next_addr()
    client.trust(lab.start(addr, HARDENED, authorized={DEPLOY_USER: client.public})
                 .known_line())
    app = host_project(tmp_path / "app", client, [addr, other])
    done = run(app, client, "scan", "--format", "json", "-h", addr)
    assert done.code == 0, done.stdout + done.stderr
    assert f'"host": "{addr}"' in done.stdout
    assert other not in done.stdout
    offline = run(app, client, "scan", "--offline")
    assert "host " not in offline.stdout


def test_gate_offline_env_skips_loudly(client: Client, tmp_path: Path) -> None:
    app = host_project(tmp_path / "app", client, ["127.55.250.250"])
    done = run(app, client, "deploy", KAMAL_SECURE_OFFLINE="1")
    assert done.code == 0, done.stderr
    assert "NOT checked" in done.stderr


def test_passthrough_never_imports_paramiko(tmp_path: Path) -> None:
    code = ("import sys; import kamal_secure.cli, kamal_secure.gate.kamal, kamal_secure.errors, "
            "kamal_secure.audit.hosts, kamal_secure.gate.run, kamal_secure.rules.registry; "
            "print('paramiko' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_paramiko_only_in_remote() -> None:
    package = Path(__file__).resolve().parent.parent / "kamal_secure"
    users = {p.relative_to(package).parts[0] for p in package.rglob("*.py")
             if "import paramiko" in p.read_text()}
    assert users == {"remote"}


def test_erb_host_cannot_be_checked(client: Client, tmp_path: Path) -> None:
    app = host_project(tmp_path / "app", client, ["127.55.250.251"])
    deploy = app / "config" / "deploy.yml"
    deploy.write_text(deploy.read_text().replace("127.55.250.251", '<%= ENV["WEB_IP"] %>'))
    done = run(app, client, "scan", "--format", "json")
    assert done.code == 3, done.stderr
    assert "comes from ERB" in done.stdout
    assert "<ERB at config/deploy.yml:5>" in done.stdout


def test_break_glass_does_not_cover_unchecked_hosts(client: Client, tmp_path: Path) -> None:
    app = host_project(tmp_path / "app", client, ["127.55.250.252"])
    deploy = app / "config" / "deploy.yml"
    deploy.write_text(deploy.read_text().replace("127.55.250.252", '<%= ENV["WEB_IP"] %>'))
    done = run(app, client, "deploy", KAMAL_SECURE_SKIP="hotfix", KAMAL_SECURE_FAIL_ON="low")
    assert done.code == 3, done.stderr
    assert "stand-in kamal ran" not in done.stdout
