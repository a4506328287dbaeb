"""Shared fixtures: a private HOME with a deploy key, the stand-in kamal, real sshd hosts.

With CI=true a host that cannot run sshd (or the old sshd) fails, never skips.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamal_secure.gate.kamal import forget_secrets
from testing.cli import Main, clean_env
from testing.project import INSECURE_CONFIG
from testing.sshd import (
    DEPLOY_USER,
    OLD_SSHD,
    Client,
    Lab,
    can_run_old_sshd,
    can_run_sshd,
    ensure_user,
    keygen,
    remove_user,
)
from testing.standin import write_standin


@pytest.fixture
def standin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "standin-bin"
    write_standin(directory)
    return directory


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real ssh-agent of this test's own (stopped by its pid)."""
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=clean_env({}))
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), "ssh-agent did not start"
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield str(sock)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.json"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "config").mkdir(parents=True)
    (root / "config" / "deploy.yml").write_text(INSECURE_CONFIG)
    (root / "config" / "deploy.secure.yml").write_text("")
    return root


@pytest.fixture(autouse=True)
def _no_ca_key_held() -> Iterator[None]:
    """A CA key one test took out of the environment is not another test's."""
    yield
    forget_secrets()


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every process it starts) gets a HOME of its own with a real deploy key,
    so nothing reads or writes the real ~/.ssh."""
    home = tmp_path_factory.mktemp("home")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    ssh.chmod(0o700)
    keygen(ssh / "kamal_deploy_key", f"kamal-deploy:shop:{dt.date.today().isoformat()}")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is not None:
        os.environ["HOME"] = old


@pytest.fixture(scope="session")
def sshd_available() -> Iterator[None]:
    why = can_run_sshd()
    if why is None:
        existed = subprocess.run(["id", DEPLOY_USER], capture_output=True,
                                 check=False).returncode == 0
        ensure_user(DEPLOY_USER)
        yield
        if not existed:
            remove_user(DEPLOY_USER)
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and real sshd tests cannot run: {why}")
    pytest.skip(why)


@pytest.fixture
def old_sshd(lab: Lab) -> Path:
    """The wrapper of OpenSSH 8.4 (scripts/install-old-sshd.sh): ``lab.start(..., old=True)``
    runs a host with it. With CI=true a missing one fails, never skips."""
    why = can_run_old_sshd()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the old sshd tests cannot run: {why}")
        pytest.skip(why)
    lab.old_sshd = Path(OLD_SSHD)
    return lab.old_sshd


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "kamal_deploy_key"
    public = keygen(key)
    (home / ".ssh" / "known_hosts").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return Client(home, key, public)


@pytest.fixture
def lab(sshd_available: None, tmp_path: Path) -> Iterator[Lab]:
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    hosts.chmod(0o755)
    tmp_path.chmod(0o755)
    lab = Lab(hosts)
    try:
        yield lab
    finally:
        lab.stop_all()


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Main:
    """The CLI's ``main`` in this process, from a clean environment (testing.cli.Main)."""
    return Main(monkeypatch, capsys)
