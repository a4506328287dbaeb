"""`kamal-secure authorize` against real sshd hosts on loopback."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.cli import Result, run_cli
from testing.live import host_project
from testing.sshd import DEPLOY_USER, HARDENED, Client, Lab, keygen, next_addr, wait_sessions_done

pytestmark = pytest.mark.sshd
# the deploy user's own ~/.ssh/authorized_keys counts too (after the lab's file)
USER_FILE = (f"Match User {DEPLOY_USER}\n"
             f"  AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys\n")


@pytest.fixture
def user_keys(sshd_available: None) -> Iterator[Path]:
    home = Path(pwd.getpwnam(DEPLOY_USER).pw_dir)
    path = home / ".ssh" / "authorized_keys"
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def old_key(client: Client) -> tuple[Path, str]:
    path = client.home / "old_identity"
    return path, keygen(path, "old-personal-key")


def authorize(app: Path, client: Client, *args: str, drop: str | None = None
              ) -> Result:
    env = {"HOME": str(client.home)}
    if drop:
        env["KAMAL_SECURE_TEST_DROP_STDIN"] = drop
    return run_cli(["authorize", *args], app, env)


def start(lab: Lab, client: Client, old: str, n: int = 1) -> list[str]:
    addrs = [next_addr() for _ in range(n)]
    for addr in addrs:
        client.trust(lab.start(addr, HARDENED + USER_FILE, authorized={DEPLOY_USER: old})
                     .known_line())
    return addrs


def test_adds_once_atomically_and_proves_it(lab: Lab, client: Client, tmp_path: Path,
                                            user_keys: Path, old_key: tuple[Path, str]) -> None:
    addrs = start(lab, client, old_key[1])
    app = host_project(tmp_path / "app", client, addrs)
    assert authorize(app, client, "--yes").code == 3  # no working credential yet
    assert not user_keys.exists()
    dry = authorize(app, client, "--dry-run", "--identity", str(old_key[0]))
    assert dry.code == 0, dry.stdout + dry.stderr
    assert "would add" in dry.stdout
    assert not user_keys.exists()
    done = authorize(app, client, "--yes", "--identity", str(old_key[0]))
    assert done.code == 0, done.stdout + done.stderr
    assert "a new login with the deploy key alone works" in done.stdout
    lines = user_keys.read_text().splitlines()
    assert lines == [client.public]
    assert stat.S_IMODE(user_keys.stat().st_mode) == 0o600
    assert stat.S_IMODE(user_keys.parent.stat().st_mode) == 0o700
    assert user_keys.stat().st_uid == pwd.getpwnam(DEPLOY_USER).pw_uid
    assert not list(user_keys.parent.glob(".authorized_keys.*")), "no temp file left"
    again = authorize(app, client, "--yes")  # now the deploy key itself logs in
    assert again.code == 0
    assert "unchanged" in again.stdout
    assert user_keys.read_text().splitlines() == [client.public]


def test_from_restriction_replaces_the_line_and_keeps_others(
    lab: Lab, client: Client, tmp_path: Path, user_keys: Path, old_key: tuple[Path, str]
) -> None:
    addrs = start(lab, client, old_key[1])
    user_keys.parent.mkdir(mode=0o700, exist_ok=True)
    user_keys.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKey1 "
                         "someone-else\n" + client.public + "\n")
    uid = pwd.getpwnam(DEPLOY_USER)
    os.chown(user_keys.parent, uid.pw_uid, uid.pw_gid)
    os.chown(user_keys, uid.pw_uid, uid.pw_gid)
    app = host_project(tmp_path / "app", client, addrs)
    done = authorize(app, client, "--yes", "--from", "127.0.0.0/8")
    assert done.code == 0, done.stdout + done.stderr
    lines = user_keys.read_text().splitlines()
    assert lines[0].endswith("someone-else")
    assert lines[1] == f'from="127.0.0.0/8" {client.public}'
    assert len(lines) == 2
    bad = authorize(app, client, "--yes", "--from", "not-a-cidr; rm -rf /")
    assert bad.code == 2
    assert "not an address or CIDR" in bad.stderr


def test_restriction_that_locks_us_out_is_rolled_back(
    lab: Lab, client: Client, tmp_path: Path, user_keys: Path, old_key: tuple[Path, str]
) -> None:
    addrs = start(lab, client, old_key[1])
    app = host_project(tmp_path / "app", client, addrs)
    done = authorize(app, client, "--yes", "--identity", str(old_key[0]),
                     "--from", "192.0.2.0/24")
    assert done.code == 3
    assert "the previous authorized_keys is back" in done.stdout
    assert user_keys.read_text() == ""


def test_one_host_down_does_not_stop_the_others(
    lab: Lab, client: Client, tmp_path: Path, user_keys: Path, old_key: tuple[Path, str]
) -> None:
    up = start(lab, client, old_key[1])
    down = next_addr()
    app = host_project(tmp_path / "app", client, [*up, down])
    done = authorize(app, client, "--yes", "--identity", str(old_key[0]))
    assert done.code == 3
    assert f"FAILED {down}" in done.stdout
    assert f"ok     {up[0]}" in done.stdout
    assert user_keys.read_text().splitlines() == [client.public]


def test_unwritable_ssh_dir_is_a_clear_per_host_error(
    lab: Lab, client: Client, tmp_path: Path, user_keys: Path, old_key: tuple[Path, str]
) -> None:
    addrs = start(lab, client, old_key[1])
    entry = pwd.getpwnam(DEPLOY_USER)
    user_keys.parent.mkdir(mode=0o755, exist_ok=True)
    user_keys.write_text("")
    os.chown(user_keys.parent, 0, 0)  # read-only for the deploy user: root's directory
    os.chown(user_keys, entry.pw_uid, entry.pw_gid)
    user_keys.parent.chmod(0o755)
    try:
        app = host_project(tmp_path / "app", client, addrs)
        done = authorize(app, client, "--yes", "--identity", str(old_key[0]))
    finally:
        os.chown(user_keys.parent, entry.pw_uid, entry.pw_gid)
        user_keys.parent.chmod(0o700)
    assert done.code == 3
    assert f"FAILED {addrs[0]}: not changed" in done.stdout
    assert user_keys.read_text() == ""



def test_full_disk_leaves_nothing_half_written(
    lab: Lab, client: Client, tmp_path: Path, user_keys: Path, old_key: tuple[Path, str]
) -> None:
    addr = start(lab, client, old_key[1])[0]
    host = lab.hosts[-1]
    assert host.process is not None
    entry = pwd.getpwnam(DEPLOY_USER)
    ssh = user_keys.parent
    ssh.mkdir(mode=0o700, exist_ok=True)
    original = "# " + "x" * 3000 + "\n"
    # a 4 KiB tmpfs over ~/.ssh inside that host's own mount namespace, already full
    setup = (f"mount -t tmpfs -o size=4k,mode=0700,uid={entry.pw_uid},gid={entry.pw_gid} "
             f"tmpfs {ssh} && printf '%s' \"$0\" > {user_keys} && chown {entry.pw_uid} "
             f"{user_keys} && chmod 600 {user_keys}")
    mounted = subprocess.run(["nsenter", "-t", str(host.process.pid), "-m", "sh", "-c", setup,
                              original], capture_output=True, text=True, check=False)
    assert mounted.returncode == 0, mounted.stderr
    app = host_project(tmp_path / "app", client, [addr])
    done = authorize(app, client, "--yes", "--identity", str(old_key[0]))
    inside = subprocess.run(["nsenter", "-t", str(host.process.pid), "-m", "sh", "-c",
                             f"cat {user_keys}; ls -a {ssh}"], capture_output=True,
                            text=True, check=False).stdout
    assert done.code == 3, done.stdout
    assert f"FAILED {addr}: not changed" in done.stdout  # the write itself failed
    assert inside.startswith(original)  # the old file, whole
    assert ".authorized_keys." not in inside  # no temp file left behind


def test_dropped_connection_during_the_write_leaves_the_file_whole(
    lab: Lab, client: Client, tmp_path: Path, old_key: tuple[Path, str]
) -> None:
    """The client dies after the remote write started and before its input was sent: the
    host reads EOF, and must not rename a short file over authorized_keys."""
    host = lab.start(next_addr(), HARDENED + USER_FILE, own_home=True)
    client.trust(host.known_line())
    addr = host.addr
    entry = pwd.getpwnam(DEPLOY_USER)
    user_keys = host.user_ssh / "authorized_keys"  # this host's own file
    original = old_key[1] + "\n" + "# a comment the owner keeps\n"
    user_keys.write_text(original)
    os.chown(user_keys, entry.pw_uid, entry.pw_gid)
    app = host_project(tmp_path / "app", client, [addr])
    dropped = authorize(app, client, "--yes", "--identity", str(old_key[0]), drop="1")
    assert dropped.code == 98, dropped.stdout + dropped.stderr
    wait_sessions_done(host)
    assert user_keys.read_text() == original
    assert not list(user_keys.parent.glob(".authorized_keys.*")), "no temp file left"
    again = authorize(app, client, "--yes", "--identity", str(old_key[0]))
    assert again.code == 0, again.stdout + again.stderr
    assert user_keys.read_text() == original + client.public + "\n"
