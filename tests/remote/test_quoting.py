"""Hostile config values never reach a remote shell unquoted (property-based)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamal_secure.config.inventory import SshSettings
from kamal_secure.remote import hostkeys, session, sshd
from kamal_secure.remote.sshd_config import ConnInfo
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, next_addr

HOSTILE = ["; rm -rf /", "$(touch pwned)", "`touch pwned`", "a\nb; touch pwned", "'", '"',
           "x' ; touch pwned ; '", "-h", "--", "${IFS}", "*", "~root", "a b", "%h %p"]
words = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40) | \
    st.sampled_from(HOSTILE)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
        self.calls.append(argv)
        return 1, ""


@given(user=words)
@settings(max_examples=200)
def test_user_is_one_argument_and_script_is_constant(user: str) -> None:
    recorder = Recorder()
    sshd.gather(recorder, user)
    for argv in recorder.calls:
        assert argv[:2] == ["sh", "-c"]
        assert argv[2] in (sshd.SCRIPT, sshd.CAT_SCRIPT, sshd.READ_SCRIPT,
                           sshd.GLOB_SCRIPT)
        assert shlex.split(shlex.join(argv)) == argv
    assert recorder.calls[0][4] == user


@given(value=words)
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_real_shell_sees_the_value_verbatim(value: str, tmp_path: Path) -> None:
    line = shlex.join(["printf", "%s", value])
    out = subprocess.run(["sh", "-c", line], cwd=tmp_path, capture_output=True, check=False)
    assert out.stdout.decode("utf-8", "surrogateescape") == value
    assert not (tmp_path / "pwned").exists()


@given(host=words, user=words)
def test_proxy_command_substitution_stays_one_word(host: str, user: str) -> None:
    line = session.proxy_command_line("nc -w 5 %h %p", session.Endpoint(host, 22, user))
    assert shlex.split(line) == ["nc", "-w", "5", host, "22"]


@given(home=words, user=words)
def test_authorized_keys_paths_are_arguments(home: str, user: str) -> None:
    recorder = Recorder()
    facts = sshd.SshdFacts(home=home or "/h", conn=ConnInfo(user, "127.0.0.1"))
    sshd.read_authorized_keys(recorder, facts)
    argv = recorder.calls[0]
    assert argv[2] == sshd.CAT_SCRIPT
    assert argv[4:], argv  # the paths fetched
    assert all(path.startswith(home or "/h") for path in argv[4:])


@pytest.mark.sshd
def test_hostile_arguments_over_real_ssh(lab: Lab, client: Client) -> None:
    addr = next_addr()
    host = lab.start(addr, HARDENED, authorized={DEPLOY_USER: client.public})
    client.trust(host.known_line())
    ssh = SshSettings(user=DEPLOY_USER, keys=(str(client.key),), keys_only=True)
    connector = session.Connector(
        ssh, hostkeys.load_known_hosts(hostkeys.known_hosts_files(Path("/nonexistent"))),
        session.load_login_keys(ssh), 5.0)
    sess = connector.open(session.Endpoint(addr, 22, DEPLOY_USER), [addr])
    try:
        for value in HOSTILE:
            status, out = sess.run(["printf", "%s", value])
            assert (status, out) == (0, value)
        status, out = sess.run(["sh", "-c", "ls ~/pwned 2>/dev/null; echo done"])
        assert out.strip() == "done"
    finally:
        sess.close()
