"""`kamal-secure harden` against real sshd hosts on loopback: hardened, or left as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kamal_secure.errors import UsageError
from kamal_secure.remediate import harden as ops
from testing.harden import (
    DROPIN,
    STATE,
    SUDO,
    TRAP,
    assert_back_to_previous,
    eventually,
    harden,
    offered,
)
from testing.live import host_project, logs_in, rules_by_host, scan_hosts
from testing.sshd import DEPLOY_USER, Client, Host, Lab, next_addr, wait_sessions_done

pytestmark = pytest.mark.sshd
LOCKOUT = ("--allow-from", "192.0.2.0/24")  # a documentation range: locks us out


def cloud_host(lab: Lab, client: Client, sudo: bool = True) -> Host:
    host = lab.start(next_addr(), "", files=TRAP, authorized={DEPLOY_USER: client.public},
                     sudoers=SUDO if sudo else None)
    client.trust(host.known_line())
    return host


def test_hardens_the_cloud_init_trap_and_is_idempotent(lab: Lab, client: Client,
                                                       tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    assert "KS701" in rules_by_host(scan_hosts(app))[host.addr]
    dry = harden(app, client, "--dry-run")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert "would change (sshd -T now -> after): passwordauthentication yes -> no" in dry.stdout
    assert not (host.etc / DROPIN).exists()
    done = harden(app, client, "--yes")
    assert done.code == 0, done.stdout + done.stderr
    assert "no password offered" in done.stdout
    text = (host.etc / DROPIN).read_text()
    assert f"AllowUsers {DEPLOY_USER}" in text
    assert "ecdh-sha2-nistp256" in text  # Kamal's net-ssh needs it
    found = rules_by_host(scan_hosts(app)).get(host.addr, set())
    baseline = {f"KS7{n:02d}" for n in range(1, 18)}  # KS701-KS717: the sshd baseline
    assert not found & baseline, found
    again = harden(app, client, "--yes")
    assert "already hardened (unchanged)" in again.stdout
    assert (host.etc / DROPIN).read_text() == text


def test_a_lockout_is_reverted_and_the_host_stays_reachable(lab: Lab, client: Client,
                                                            tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--allow-from", "192.0.2.0/24")
    assert done.code == 3
    assert "reverted" in done.stdout
    assert not (host.etc / DROPIN).exists()
    assert "KS801" not in str(scan_hosts(app).problems)  # still reachable with the key


def test_sshd_t_failure_changes_nothing(lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    host.write("sshd_config.d/10-broken.conf", "NoSuchKeyword yes\n")
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes")
    assert done.code == 3
    assert "`sshd -t` rejected the result, nothing changed" in done.stdout
    assert not (host.etc / DROPIN).exists()


def test_without_root_or_sudo_it_says_so(lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client, sudo=False)
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes")
    assert done.code == 3
    assert "needs root or passwordless sudo" in done.stdout
    assert not (host.etc / DROPIN).exists()


def test_bad_cidr_is_a_usage_error(client: Client, tmp_path: Path) -> None:
    app = host_project(tmp_path / "app", client, ["127.55.250.240"])
    done = harden(app, client, "--yes", "--allow-from", "$(reboot)")
    assert done.code == 2
    assert "not an address or CIDR" in done.stderr


@pytest.mark.parametrize("stage", ["armed", "written", "validated", "reloaded"])
def test_killed_at_any_stage_of_a_lockout_the_host_restores_itself(
        stage: str, lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    assert "password" in (offered(host) or ())
    app = host_project(tmp_path / "app", client, [host.addr])
    killed = harden(app, client, "--yes", *LOCKOUT, "--rollback-after", "3",
                    crash=f"harden-{stage}")
    assert killed.code == 99, killed.stdout + killed.stderr
    assert_back_to_previous(host, client)


def test_killed_after_the_proof_before_the_cancel_the_host_restores_itself(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    killed = harden(app, client, "--yes", "--rollback-after", "3", crash="harden-proven")
    assert killed.code == 99, killed.stdout + killed.stderr
    assert_back_to_previous(host, client)


def test_connection_dropped_during_the_write_the_host_restores_itself(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    dropped = harden(app, client, "--yes", *LOCKOUT, "--rollback-after", "3", drop="1")
    assert dropped.code == 98, dropped.stdout + dropped.stderr
    assert_back_to_previous(host, client)


def test_a_successful_run_leaves_no_timer_and_a_rerun_judges_the_daemon(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    done = harden(app, client, "--yes", "--rollback-after", "3")
    assert done.code == 0, done.stdout + done.stderr
    assert not (host.etc / STATE).exists()
    wait_sessions_done(host)  # no timer process left in the host's namespace
    assert "password" not in (offered(host) or ("password",))
    assert logs_in(client.key, host, client)
    # The file is hardened, the daemon is not (as after a kill before the reload, with no
    # switch): a rerun must not call it "already hardened".
    wanted = (host.etc / DROPIN).read_text()
    (host.etc / DROPIN).unlink()
    assert lab_reload(host)
    assert eventually(lambda: "password" in (offered(host) or ()))
    host.write(DROPIN, wanted)
    again = harden(app, client, "--yes", "--rollback-after", "3")
    assert again.code == 0, again.stdout + again.stderr
    assert "already hardened" not in again.stdout
    assert "password" not in (offered(host) or ("password",))
    assert not (host.etc / STATE).exists()


def lab_reload(host: Host) -> bool:
    """HUP the host's sshd, as `harden` does, from outside."""
    pid = (host.root / "sshd.pid").read_text().strip()
    return subprocess.run(["kill", "-HUP", pid], check=False).returncode == 0


def test_allow_from_is_refused_when_another_allowusers_lets_the_user_in(
        lab: Lab, client: Client, tmp_path: Path) -> None:
    host = lab.start(next_addr(), "", authorized={DEPLOY_USER: client.public}, sudoers=SUDO,
                     files={**TRAP, "sshd_config.d/60-users.conf": f"AllowUsers {DEPLOY_USER}\n"})
    client.trust(host.known_line())
    app = host_project(tmp_path / "app", client, [host.addr])
    dry = harden(app, client, "--dry-run", "--allow-from", "127.0.0.0/8")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert f"would refuse: AllowUsers {DEPLOY_USER} (set elsewhere" in dry.stdout
    done = harden(app, client, "--yes", "--allow-from", "127.0.0.0/8")
    assert done.code == 3, done.stdout + done.stderr
    assert "restrict nothing" in done.stdout
    assert not (host.etc / DROPIN).exists()
    assert not (host.etc / STATE).exists()
    # a narrower user@CIDR entry inside the range we allow is no loophole
    host.write("sshd_config.d/60-users.conf", f"AllowUsers {DEPLOY_USER}@127.0.0.1\n")
    ok = harden(app, client, "--yes", "--allow-from", "127.0.0.0/8", "--rollback-after", "30")
    assert ok.code == 0, ok.stdout + ok.stderr


def test_a_rerun_while_the_switch_is_armed_refuses_then_works(lab: Lab, client: Client,
                                                              tmp_path: Path) -> None:
    host = cloud_host(lab, client)
    app = host_project(tmp_path / "app", client, [host.addr])
    killed = harden(app, client, "--yes", "--rollback-after", "20", crash="harden-reloaded")
    assert killed.code == 99, killed.stdout + killed.stderr
    rerun = harden(app, client, "--yes")
    assert rerun.code == 3, rerun.stdout + rerun.stderr
    assert "an earlier interrupted harden run armed a rollback here" in rerun.stdout
    assert_back_to_previous(host, client)
    done = harden(app, client, "--yes", "--rollback-after", "20")
    assert done.code == 0, done.stdout + done.stderr
    assert not (host.etc / STATE).exists()


def test_the_baseline_narrowed_to_what_an_older_sshd_knows() -> None:
    base = ops.baseline(DEPLOY_USER, [], [], {})
    settings = dict(base.settings)
    kex = settings["KexAlgorithms"].split(",")
    older = {"KexAlgorithms": kex[1:], "Ciphers": settings["Ciphers"].split(","),
             "MACs": settings["MACs"].split(",")}  # OpenSSH 8.4: no sntrup761x25519
    narrowed, left_out = base.narrowed({**older, "ChallengeResponseAuthentication": ["no"]})
    assert left_out == [kex[0]]
    assert dict(narrowed.settings)["KexAlgorithms"] == ",".join(kex[1:])
    assert "ecdh-sha2-nistp256" in narrowed.expected()["kexalgorithms"]
    assert f"KexAlgorithms {','.join(kex[1:])}\n" in narrowed.text()
    assert base.narrowed({}) == (base, [])  # the probe failed: the drop-in as it was
    assert "ChallengeResponseAuthentication no\n" in narrowed.text()
    assert "challengeresponseauthentication" not in narrowed.expected()  # an alias on 8.7+
    newest, gone = base.narrowed({**older, "ChallengeResponseAuthentication": []})
    assert gone == ["ChallengeResponseAuthentication", kex[0]]  # an sshd that dropped it
    assert "ChallengeResponse" not in newest.text()
    with pytest.raises(UsageError, match="does not accept MACs hmac-sha2-512-etm"):
        base.narrowed({**older, "MACs": ["hmac-sha1"]})
    # a probe that lost names (a fork limit, garbled output) never drops Kamal's ECDH
    with pytest.raises(UsageError, match="ecdh-sha2-nistp256"):
        base.narrowed({**older, "KexAlgorithms": ["curve25519-sha256"]})
