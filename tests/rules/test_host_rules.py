from __future__ import annotations

from pathlib import Path

import pytest

from kamal_secure.config.inventory import local_registry
from kamal_secure.config.load import load_project
from kamal_secure.facts.host import SOURCE_DERIVED, AuthorizedKey, HostKey, SshdConfig
from kamal_secure.report.model import Location, Severity
from kamal_secure.rules import host
from kamal_secure.rules.base import Rule
from kamal_secure.rules.host_base import HostThresholds
from testing.hostfacts import HARDENED, facts

WHERE = Location("config/deploy.yml", 4, 7, host="web-1")
SSHD_EXAMPLE_RULES = [r for r in host.RULES
                      if r.id <= "KS717" and r.id not in ("KS709",)]
POLICY_CHOICES = HostThresholds(banner="required", print_last_log="no", port=22)


def ids(f: object, policy: HostThresholds | None = None) -> set[str]:
    return {x.rule for x in host.check_host(f, policy or HostThresholds(), WHERE)}  # type: ignore[arg-type]


def test_hardened_host_is_clean() -> None:
    assert ids(facts()) == set()


@pytest.mark.parametrize("rule", SSHD_EXAMPLE_RULES, ids=lambda r: r.id)
def test_doc_examples(rule: Rule) -> None:
    """The rule's insecure sshd_config snippet, first in the file, triggers it; secure not."""
    rest = HARDENED.replace("AllowUsers deploy\n", "") if rule.id == "KS710" else HARDENED
    assert rule.id in ids(facts(rule.insecure + rest, offered=None))
    assert rule.id not in ids(facts(rule.secure + rest, offered=None))


def test_every_host_rule_has_metadata() -> None:
    for rule in host.RULES:
        assert rule.family == "host"
        assert rule.rationale
        assert rule.fix
        assert rule.title
        assert rule.insecure
        assert rule.secure


def test_cloud_init_drop_in_wins() -> None:
    main = "Include /etc/ssh/sshd_config.d/*.conf\n" + HARDENED
    drop = {"/etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n",
            "/etc/ssh/sshd_config.d/99-hardening.conf": "PasswordAuthentication no\n"}
    from testing.hostfacts import sshd_of

    f = facts(offered=("publickey", "password"), sshd=sshd_of(main, files=drop))
    assert "KS701" in ids(f)
    assert "KS721" not in ids(f)


def test_live_probe_alone_is_critical_and_disagreement_reported() -> None:
    f = facts(offered=("publickey", "password"))
    found = {x.rule: x for x in host.check_host(f, HostThresholds(), WHERE)}
    assert found["KS701"].severity is Severity.CRITICAL
    assert "not reloaded" in found["KS701"].message
    assert "KS721" in found
    assert found["KS701"].location.host == "web-1"
    assert found["KS701"].location.line == 4


def test_probe_only_without_sshd_t() -> None:
    f = facts(offered=("publickey", "keyboard-interactive"), sshd=None)
    assert ids(f) == {"KS702", "KS722"}  # KS722: the settings are unknown, at high


def test_unknown_settings_the_probe_cannot_decide_are_incomplete() -> None:
    from kamal_secure.rules.host_access import undecided

    assert undecided(facts(sshd=None)) == ["PermitRootLogin"]
    assert undecided(facts(sshd=None, offered=None)) == [
        "PasswordAuthentication", "KbdInteractiveAuthentication", "AuthenticationMethods",
        "PermitRootLogin"]
    assert undecided(facts()) == []


def test_root_login_prohibit_password_only_ok_for_root() -> None:
    text = "PermitRootLogin prohibit-password\n" + HARDENED.replace("AllowUsers deploy",
                                                                     "AllowUsers deploy root")
    assert "KS704" in ids(facts(text))
    assert "KS704" not in ids(facts(text, user="root"))


def test_allow_users_missing_deploy_user() -> None:
    found = list(host.check_host(facts(HARDENED.replace("deploy", "alice")), HostThresholds(),
                                 WHERE))
    assert [f.message for f in found if f.rule == "KS710"] == [
        "AllowUsers does not list deploy: Kamal will be refused"]


def test_thresholds_from_policy() -> None:
    text = "MaxAuthTries 6\n" + HARDENED
    assert "KS711" in ids(facts(text))
    assert "KS711" not in ids(facts(text), HostThresholds(max_auth_tries=6))


def test_weak_host_key() -> None:
    assert "KS709" in ids(facts(host_key=HostKey("ssh-rsa", 2048, "SHA256:x")))
    assert "KS709" not in ids(facts(host_key=HostKey("ssh-ed25519", 256, "SHA256:x")))


def test_authorized_keys_rules() -> None:
    deploy = AuthorizedKey("ssh-ed25519", "SHA256:deploy", "kamal", 'from="10.0.0.0/8"', "ak")
    other = AuthorizedKey("ssh-rsa", "SHA256:other", "laptop", "", "ak")
    f = facts(authorized_keys=(deploy, other), deploy_fingerprints=("SHA256:deploy",))
    found = {(x.rule, x.severity) for x in host.check_host(f, HostThresholds(), WHERE)}
    assert found == {("KS719", Severity.INFO), ("KS720", Severity.INFO)}
    f = facts(authorized_keys=(other,), deploy_fingerprints=("SHA256:deploy",))
    assert ids(f) == {"KS718", "KS719"}
    unrestricted = AuthorizedKey("ssh-ed25519", "SHA256:deploy", "", "", "ak")
    f = facts(authorized_keys=(unrestricted,), deploy_fingerprints=("SHA256:deploy",))
    assert ids(f) == {"KS720"}


def test_derived_is_labelled() -> None:
    derived = SshdConfig.parse("passwordauthentication no\nallowusers deploy\n",
                               source=SOURCE_DERIVED)
    assert ids(facts(sshd=derived)) == {"KS722"}


def test_none_authentication_accepted() -> None:
    assert ids(facts(offered=("none",))) >= {"KS703"}


def test_policy_choices_only_when_set() -> None:
    text = "Banner none\nPrintLastLog yes\nPort 2222\n" + HARDENED
    assert "KS723" not in ids(facts(text))
    found = [f.message for f in host.check_host(facts(text), POLICY_CHOICES, WHERE)
             if f.rule == "KS723"]
    assert found == ["no login Banner (policy: required)",
                     "PrintLastLog is yes (policy: no)",
                     "sshd listens on port 2222 (policy: 22)"]
    rule = next(r for r in host.RULES if r.id == "KS723")
    assert "KS723" in ids(facts(rule.insecure + HARDENED), POLICY_CHOICES)
    assert "KS723" not in ids(facts(rule.secure + HARDENED), POLICY_CHOICES)


@pytest.mark.parametrize(("value", "rule_severity"), [
    ("remote", Severity.INFO), ("no", Severity.LOW), ("local", Severity.LOW),
    ("yes", Severity.MEDIUM), ("all", Severity.MEDIUM)])
def test_local_registry_needs_remote_forwarding(value: str, rule_severity: Severity) -> None:
    """registry.server localhost:5555: Kamal forwards a port from each host back to the
    registry, so `remote` is what Kamal needs (said so), and `no` would break the deploy."""
    f = facts(HARDENED.replace("AllowTcpForwarding no", f"AllowTcpForwarding {value}"))
    found = [x for x in host.check_host(f, HostThresholds(), WHERE, "localhost:5555")
             if x.rule == "KS713"]
    assert [x.severity for x in found] == [rule_severity]
    assert "localhost:5555 is Kamal's local registry" in found[0].message
    if value != "remote":
        assert "AllowTcpForwarding remote" in (found[0].fix or "")
    without = {x.rule for x in host.check_host(f, HostThresholds(), WHERE)}
    assert ("KS713" in without) is (value not in ("no", "local"))


@pytest.mark.parametrize(("server", "local"), [
    ("localhost:5555", True), ("localhost:80", True), ("localhost", False),
    ("localhost.example.com:5000", False), ("ghcr.io", False), ("127.0.0.1:5555", False)])
def test_local_registry_matches_kamal(server: str, local: bool, tmp_path: Path) -> None:
    """Kamal's Registry#local? is `server.match?("^localhost[:$]")`."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config/deploy.yml").write_text(
        f"service: s\nimage: i\nservers: [203.0.113.1]\nregistry:\n  server: {server}\n")
    project = load_project("config/deploy.yml", None, tmp_path)
    assert (local_registry(project) == server) is local


def _one(f: object, rule: str, policy: HostThresholds | None = None) -> list[object]:
    return [x for x in host.check_host(f, policy or HostThresholds(), WHERE)  # type: ignore[arg-type]
            if x.rule == rule]


def test_rule_texts_agree_with_what_they_check() -> None:
    """KS720 never tells a restricted key to add from=; KS711's fix names the policy's own
    number; KS708 follows Mozilla's list: OpenSSH's default hmac-sha2-256/512 are not weak."""
    restricted = AuthorizedKey("ssh-ed25519", "SHA256:deploy", "k", 'from="10.0.0.0/8"', "ak")
    f = facts(authorized_keys=(restricted,), deploy_fingerprints=("SHA256:deploy",))
    [info] = _one(f, "KS720")
    assert "from=" not in (info.fix or "").split("keep")[0]  # type: ignore[attr-defined]
    open_key = AuthorizedKey("ssh-ed25519", "SHA256:deploy", "k", "", "ak")
    f = facts(authorized_keys=(open_key,), deploy_fingerprints=("SHA256:deploy",))
    [low] = _one(f, "KS720")
    assert "authorize --from CIDR" in (low.fix or "")  # type: ignore[attr-defined]
    many = facts(HARDENED.replace("MaxAuthTries 3", "MaxAuthTries 6"))
    for limit in (4, 5):
        [tries] = _one(many, "KS711", HostThresholds(max_auth_tries=limit))
        assert f"MaxAuthTries {limit}`" in (tries.fix or "")  # type: ignore[attr-defined]
        assert f"at most {limit}" in tries.message  # type: ignore[attr-defined]
    default_macs = facts(HARDENED.replace(
        "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
        "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512,umac-128@openssh.com"))
    assert "KS708" not in ids(default_macs)
    weak = facts(HARDENED.replace("MACs hmac-sha2-512-etm@openssh.com",
                                  "MACs hmac-sha1,hmac-sha2-512-etm@openssh.com"))
    assert "KS708" in ids(weak)
