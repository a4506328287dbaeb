"""The Ruby guard's failure modes, with a tiny fake Ruby "kamal" at the exec boundary.

The fake defines just enough of Thor, SSHKit, net-ssh and Kamal for the real guard
(kamal_secure/gate/oracle/guard.rb) to hook them, then dispatches `deploy`, whose body
writes a marker file. Every failure must stop it before the body: exit 3, no marker.
The positive control (everything present, a clean config) runs the body.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testing.cli import KAMAL_SECURE, REPO, clean_env
from testing.project import SECURE_CONFIG
from testing.standin import FAKE_RUBY_KAMAL

pytestmark = pytest.mark.skipif(shutil.which("ruby") is None and os.environ.get("CI") != "true",
                                reason="ruby is installed by scripts/install-kamal.sh (make e2e)")



@pytest.fixture
def fake(tmp_path: Path) -> Path:
    directory = tmp_path / "fake-bin"
    directory.mkdir()
    path = directory / "kamal"
    path.write_text(FAKE_RUBY_KAMAL)
    path.chmod(0o755)
    return path


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "config").mkdir(parents=True)
    (root / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    return root


def start(fake: Path, app: Path, marker: Path, **extra: str) -> subprocess.Popen[str]:
    env = clean_env({"PATH": os.pathsep.join([str(fake.parent), "/usr/bin", "/bin"]),
                     "KAMAL_SECURE_OFFLINE": "1", "FAKE_MARKER": str(marker), **extra})
    return subprocess.Popen([*KAMAL_SECURE, "deploy"], cwd=app, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def test_control_everything_present_runs_the_command(fake: Path, app: Path,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, output = finish(start(fake, app, marker, RUBYOPT="-W0"))
    assert code == 0, output
    assert marker.read_text() == "ran"
    # the command (and so any hook it starts) sees neither the guard nor its -r, only the
    # user's own RUBYOPT
    assert (tmp_path / "ran.env").read_text() == 'false "-W0"'


def test_guard_is_inert_in_any_other_process(tmp_path: Path) -> None:
    """A Ruby process that inherits the guard's variables but is not the exec'd kamal."""
    guard = REPO / "kamal_secure" / "gate" / "oracle" / "guard.rb"
    env = clean_env({"KAMAL_SECURE_GUARD": "v1:1:0", "RUBYOPT": f"-r{guard}"})
    done = subprocess.run(["ruby", "-e", "print defined?(KamalSecureGuard) ? :loaded : :no; "
                           "print ENV['KAMAL_SECURE_GUARD']"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "loadedv1:1:0"  # loaded, did nothing, touched nothing
    assert done.stderr == ""


@pytest.mark.parametrize(("mode", "version", "says"), [
    ("no_sshkit", "2.12.0", "SSHKit::Coordinator was not found"),
    ("no_thor_run", "2.12.0", "Thor::Command#run was not found"),
    ("", "3.0.0", "unknown Kamal version 3.0.0"),
    ("host_raises", "2.12.0", "boom inside Kamal's SSHKit"),
    ("malformed", "2.12.0", "malformed verdict"),
])
def test_guard_failure_stops_kamal_with_exit_3(mode: str, version: str, says: str, fake: Path,
                                               app: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, output = finish(start(fake, app, marker, FAKE_MODE=mode, FAKE_VERSION=version))
    assert code == 3, output
    assert says in output
    assert "kamal-secure: guard:" in output
    assert f"Kamal {version}" in output  # the message names the Kamal version
    assert not marker.exists()


def test_verdict_process_killed_stops_kamal(fake: Path, app: Path, tmp_path: Path) -> None:
    marker, ready, go = tmp_path / "ran", tmp_path / "ready", tmp_path / "go"
    proc = start(fake, app, marker, FAKE_WAIT_FOR=str(go), FAKE_READY=str(ready))
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    kamal_pid = int(ready.read_text())
    assert kamal_pid == proc.pid  # the guard runs in the very process kamal-secure exec'd
    verdict = _verdict_process(proc.pid, str(fake.parent))
    os.kill(verdict, signal.SIGKILL)
    go.write_text("")
    code, output = finish(proc)
    assert code == 3, output
    assert "gave no verdict" in output or "unreachable" in output
    assert not marker.exists()


def _verdict_process(kamal_pid: int, fake_dir: str) -> int:
    """The forked verdict process: a kamal_secure python with our PATH, not kamal itself."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == kamal_pid:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"kamal_secure" in cmdline and fake_dir.encode() in environ:
            return int(entry.name)
    raise AssertionError("the verdict process was not found")
