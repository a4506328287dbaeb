"""Drift watch without hosts: the state file, the comparison, the parsers of host output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamal_secure import rules
from kamal_secure.audit import drift
from kamal_secure.errors import ConfigError
from kamal_secure.remote.drift_facts import (
    HostState,
    parse_proc_net,
    parse_ss,
    safe_options,
    scrub,
    sudo_rules,
)
from kamal_secure.report.model import Location, Severity

HERE = Location(host="web-1")
KEY = {"type": "ssh-ed25519", "options": "", "comment": "kamal-deploy:shop"}


def host(**kinds: dict[str, object] | str) -> HostState:
    state = HostState()
    for kind, facts in kinds.items():
        name = kind.replace("__", " ")
        if isinstance(facts, str):
            state.unknown[name] = facts
        else:
            state.facts[name] = dict(facts)
    return state


def changes(old: HostState, new: HostState) -> list[tuple[str, Severity, str]]:
    return [(f.rule, f.severity, f.message) for f in drift.compare(old, new, "web-1", HERE)]


APPROVED = host(authorized_key__deploy={"SHA256:aaa": KEY},
                hostkey={"ssh-ed25519": "SHA256:hk1"},
                group={"docker deploy": "member"},
                sudoers={},
                listen={"0.0.0.0:22": "sshd", "127.0.0.1:5432": "?"},
                sshd={"passwordauthentication": "no", "authorizedkeyscommand": "none",
                      "trustedusercakeys": "none"},
                sshd_source={"kind": "sshd -T"},
                ca_key={})


def test_render_is_sorted_one_fact_per_line_and_round_trips() -> None:
    state = drift.State({"web-2": host(group={}), "web-1": APPROVED})
    text = drift.render(state)
    assert drift.render(drift.parse(text)) == text
    assert text.index('"web-1"') < text.index('"web-2"')
    assert '        "SHA256:aaa": {"comment": "kamal-deploy:shop", "options": "", ' \
           '"type": "ssh-ed25519"}' in text.splitlines()
    assert '      "group": {}' in text.splitlines()
    lines = drift.parse(text).lines
    assert text.splitlines()[lines["web-2"] - 1] == '    "web-2": {'
    assert text.splitlines()[lines["web-1"] - 1] == '    "web-1": {'


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(
    st.sampled_from(["hostkey", "group", "sudoers", "listen", "sshd", "ca_key"]),
    st.one_of(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=30),
                              max_size=4),
              st.text(max_size=30).map(lambda why: "unknown: " + why)),
    max_size=6))
def test_round_trip_any_state(kinds: dict[str, object]) -> None:
    text = drift.render(drift.State({"h": _from(kinds)}))
    assert drift.render(drift.parse(text)) == text


def _from(kinds: dict[str, object]) -> HostState:
    state = HostState()
    for kind, facts in kinds.items():
        if isinstance(facts, str):
            state.unknown[kind] = facts.removeprefix("unknown: ")
        else:
            assert isinstance(facts, dict)
            state.facts[kind] = facts
    return state


@pytest.mark.parametrize("text", [
    "[]", "{}", '{"format": "kamal-secure-state/9", "hosts": {}}',
    '{"format": "kamal-secure-state/1", "hosts": {"a": {"passwords": {}}}}',
    '{"format": "kamal-secure-state/1", "hosts": {"a": {"sudoers": "not unknown"}}}',
    "not json"])
def test_bad_state_files_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match=r"secure-state\.json"):
        drift.parse(text)


def test_nothing_changed_nothing_found() -> None:
    assert changes(APPROVED, APPROVED) == []


def test_each_change_has_its_rule_and_severity() -> None:
    live = host(authorized_key__deploy={"SHA256:aaa": KEY, "SHA256:bbb": KEY},
                hostkey={"ssh-ed25519": "SHA256:hk2"},
                group={"docker deploy": "member", "docker eve": "member"},
                sudoers={"deploy (ALL) NOPASSWD: ALL": ""},
                listen={"0.0.0.0:22": "sshd", "0.0.0.0:8080": "python3"},
                sshd={"passwordauthentication": "yes", "authorizedkeyscommand": "/bin/k",
                      "trustedusercakeys": "/etc/ssh/ca.pub"},
                sshd_source={"kind": "sshd -T"},
                ca_key={"SHA256:ca": "ssh-ed25519"})
    found = changes(APPROVED, live)
    assert [(r, s) for r, s, _ in found] == [
        ("KS751", Severity.HIGH), ("KS757", Severity.HIGH), ("KS753", Severity.HIGH),
        ("KS752", Severity.HIGH), ("KS755", Severity.MEDIUM), ("KS755", Severity.LOW),
        ("KS756", Severity.MEDIUM), ("KS754", Severity.HIGH)]
    assert found[0][2] == ("host web-1 gained authorized key for deploy: ssh-ed25519 "
                           "SHA256:bbb (kamal-deploy:shop)")
    assert found[3][2] == ("host web-1 changed host key: ssh-ed25519 SHA256:hk1 -> "
                           "ssh-ed25519 SHA256:hk2")
    assert found[5][2] == "host web-1 lost listening TCP port: 127.0.0.1:5432"
    # passwordauthentication is judged by KS701, which reports it: not again here
    assert not any("passwordauthentication" in m for _, _, m in found)
    # snapshot lists every change --approve would accept, judged settings too
    listed = [f.message for f in drift.compare(APPROVED, live, "web-1", HERE, judged=True)]
    assert "host web-1 changed sshd setting: passwordauthentication no -> " \
           "passwordauthentication yes" in listed
    # the CA file's path is not a second finding: KS757 reports the keys in it
    assert not any("trustedusercakeys" in m for _, _, m in found)


def test_options_change_is_high_comment_change_is_not_a_change() -> None:
    restricted = dict(KEY, options='from="10.0.0.0/8"')
    old = host(authorized_key__deploy={"SHA256:aaa": restricted})
    assert [(r, s) for r, s, _ in changes(old, host(authorized_key__deploy={
        "SHA256:aaa": KEY}))] == [("KS751", Severity.HIGH)]
    assert changes(old, host(authorized_key__deploy={
        "SHA256:aaa": dict(restricted, comment="renamed")})) == []


def test_listener_process_unseen_is_not_a_change() -> None:
    old = host(listen={"0.0.0.0:80": "kamal-proxy"})
    assert changes(old, host(listen={"0.0.0.0:80": "?"})) == []
    [(rule, severity, _)] = changes(old, host(listen={"0.0.0.0:80": "nc"}))
    assert (rule, severity) == ("KS755", Severity.MEDIUM)


def test_unknown_is_never_unchanged() -> None:
    lost = changes(host(sudoers={"deploy (ALL) ALL": ""}), host(sudoers="sudo refused"))
    assert lost == [("KS759", Severity.HIGH, "host web-1: approved sudo rules cannot be "
                     "read now, so they may have changed (sudo refused)")]
    still = changes(host(sudoers="no sudo -n"), host(sudoers="no sudo -n"))
    assert [(r, s) for r, s, _ in still] == [("KS759", Severity.INFO)]
    now = changes(host(listen="no ss"), host(listen={"0.0.0.0:22": "sshd"}))
    assert [(r, s) for r, s, _ in now] == [("KS759", Severity.LOW)]
    port = changes(host(listen={}), host(listen="no ss"))
    assert [(r, s) for r, s, _ in port] == [("KS759", Severity.MEDIUM)]


def test_settings_read_another_way_are_not_compared() -> None:
    old = host(sshd={"usepam": "yes"}, sshd_source={"kind": "sshd -T"})
    new = host(sshd={"usepam": "no"}, sshd_source={"kind": "derived"})
    assert [(r, s) for r, s, _ in changes(old, new)] == [("KS759", Severity.MEDIUM)]


def test_judged_settings_are_read_by_host_rules() -> None:
    files = list(Path(rules.__file__).parent.glob("host_*.py"))
    assert files, "no host rule modules found: the glob no longer matches the layout"
    source = "".join(p.read_text() for p in files)
    missing = [k for k in drift.JUDGED if f'"{k}"' not in source]
    assert missing == []


def test_parse_ss_addresses_and_processes() -> None:
    text = ('LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=7,fd=3))\n'
            'LISTEN 0 4096 [::]:443 [::]:* users:(("kamal-proxy",pid=9,fd=8),'
            '("kamal-proxy",pid=9,fd=9))\n'
            "LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\n"
            "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5555\n")
    assert parse_ss(text) == {"0.0.0.0:22": "sshd", "[::]:443": "kamal-proxy",
                              "127.0.0.53:53": "?"}


def test_parse_proc_net() -> None:
    text = ("  sl  local_address rem_address   st\n"
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
            "   1: 0100007F:0016 0200007F:D431 01 00000000:00000000\n"
            "   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000"
            " 0A 0\n")
    assert parse_proc_net(text) == {"127.0.0.1:8080": "?", "[::]:443": "?"}


def test_sudo_rules_leave_defaults_out() -> None:
    text = ("Matching Defaults entries for deploy on web:\n"
            "    env_reset, secure_path=/usr/bin\n\n"
            "User deploy may run the following commands on web:\n"
            "    (root) NOPASSWD: /usr/sbin/sshd\n    (ALL : ALL)   ALL\n")
    assert sudo_rules(text) == ["(root) NOPASSWD: /usr/sbin/sshd", "(ALL : ALL) ALL"]
    assert sudo_rules("User deploy is not allowed to run sudo on web.\n") == []


def test_forced_commands_and_environment_are_digested() -> None:
    out = safe_options('from="10.0.0.0/8",command="backup --token=s3cr3t",'
                       'environment="API_KEY=s3cr3t",no-pty')
    assert "s3cr3t" not in out
    assert out.startswith('from="10.0.0.0/8",command=<sha256:')
    assert re.search(r"environment=<sha256:[0-9a-f]{16}>,no-pty$", out)


def test_nightly_example_runs_scan_drift_as_sarif_on_a_schedule() -> None:
    import yaml

    path = Path(__file__).resolve().parent.parent / "examples" / "drift-nightly.yml"
    workflow = yaml.safe_load(path.read_text())
    assert workflow[True]["schedule"][0]["cron"]  # YAML 1.1 reads the key `on` as True
    steps = workflow["jobs"]["drift"]["steps"]
    scan = next(s["run"] for s in steps if "scan --drift" in s.get("run", ""))
    assert "--format sarif" in scan
    assert "--soft-fail" not in scan


def test_secret_looking_text_from_hosts_is_digested() -> None:
    rule = "(root) NOPASSWD: /usr/bin/backup --password=Zx9#kQ2!vL7@pR4w"
    assert "Zx9#kQ2" not in scrub(rule)
    assert scrub(rule).startswith("(root) NOPASSWD: /usr/bin/backup --password=<sha256:")
    token = "/usr/bin/curl -H Bearer ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    assert scrub(token).startswith("<redacted: GitHub token, sha256:")
    assert scrub("/usr/sbin/sshd -T") == "/usr/sbin/sshd -T"
    assert scrub(token) == scrub(token)  # stable: an unchanged host is unchanged
