"""KS724-KS728: the host rules of certificate mode, over facts built from sshd_config text."""

from __future__ import annotations

from dataclasses import replace

from kamal_secure.facts.host import AuthorizedKey, HostFacts, HostFile
from kamal_secure.facts.keys import CaFacts, KeyInfo
from kamal_secure.report.model import Finding, Location, Severity
from kamal_secure.rules import host
from kamal_secure.rules.host_base import HostThresholds
from testing.hostfacts import HARDENED, facts

WHERE = Location("config/deploy.yml", 4, 7, host="web-1")
CA = CaFacts("certificates.ca", None, env_info=KeyInfo("ed25519", 256, "SHA256:projectca"))
UNREAD_CA = CaFacts("KAMAL_SECURE_CA_ENV", None)  # certificate mode, public key unknown
CA_CONF = "TrustedUserCAKeys /etc/ssh/kamal_ca.pub\n"
PRINCIPALS = "AuthorizedPrincipalsFile /etc/ssh/principals/%u\n"
REVOKED = "RevokedKeys /etc/ssh/revoked_keys\n"
CERT_HARDENED = CA_CONF + PRINCIPALS + REVOKED + HARDENED
CERT_RULES = {"KS724", "KS725", "KS726", "KS727", "KS728"}


def ca_key(fingerprint: str, comment: str = "kamal-secure-ca:2026-01-02") -> AuthorizedKey:
    return AuthorizedKey("ssh-ed25519", fingerprint, comment, "", "/etc/ssh/kamal_ca.pub")


TRUSTS_PROJECT = HostFile("/etc/ssh/kamal_ca.pub", "ok", (ca_key("SHA256:projectca"),))
REVOKED_OK = HostFile("/etc/ssh/revoked_keys", "ok")


def found(f: HostFacts, ca: CaFacts | None = CA) -> list[Finding]:
    return [x for x in host.check_host(f, HostThresholds(), WHERE, None, ca)
            if x.rule in CERT_RULES]


def ids(f: HostFacts, ca: CaFacts | None = CA) -> set[str]:
    return {x.rule for x in found(f, ca)}


def cert_host(**extra: object) -> HostFacts:
    ready = facts(CERT_HARDENED, trusted_ca=TRUSTS_PROJECT, revoked_keys=REVOKED_OK,
                  authorized_keys=())
    return replace(ready, **extra)  # type: ignore[arg-type]


def test_a_host_ready_for_certificates_is_clean() -> None:
    assert ids(cert_host()) == set()


def test_key_mode_judges_nothing_about_the_project_ca() -> None:
    """Without a project CA only what is wrong whatever the mode is reported."""
    assert ids(facts(), ca=None) == set()
    assert ids(facts(CA_CONF + HARDENED, trusted_ca=TRUSTS_PROJECT), ca=None) == {"KS727"}
    other = HostFile("/etc/ssh/kamal_ca.pub", "ok", (ca_key("SHA256:other"),))
    key = AuthorizedKey("ssh-ed25519", "SHA256:deploy", "kamal-deploy:shop", "", "ak")
    assert ids(cert_host(trusted_ca=other, authorized_keys=(key,)), ca=None) == set()


def test_certificate_mode_and_no_ca_trusted() -> None:
    f = facts(PRINCIPALS + REVOKED + HARDENED, revoked_keys=REVOKED_OK)
    (finding,) = found(f)
    assert finding.rule == "KS724"
    assert finding.severity is Severity.HIGH
    assert "trusts no CA" in finding.message
    assert "trustedusercakeys none" in (
        finding.evidence or "")


def test_the_ca_file_absent_empty_or_unreadable() -> None:
    absent = HostFile("/etc/ssh/kamal_ca.pub", "absent")
    assert ids(cert_host(trusted_ca=absent)) == {"KS724"}
    empty = HostFile("/etc/ssh/kamal_ca.pub", "ok", ())
    assert ids(cert_host(trusted_ca=empty)) == {"KS724"}
    unreadable = HostFile("/etc/ssh/kamal_ca.pub", "unreadable")
    assert ids(cert_host(trusted_ca=unreadable)) == set()  # unknown is never absent


def test_another_ca_instead_of_or_beside_the_project_ca() -> None:
    stranger = ca_key("SHA256:stranger", "someone-elses-ca")
    instead = HostFile("/etc/ssh/kamal_ca.pub", "ok", (stranger,))
    assert ids(cert_host(trusted_ca=instead)) == {"KS724", "KS725"}
    beside = HostFile("/etc/ssh/kamal_ca.pub", "ok", (ca_key("SHA256:projectca"), stranger))
    (finding,) = found(cert_host(trusted_ca=beside))
    assert finding.rule == "KS725"
    assert "someone-elses-ca" in finding.message
    assert "SHA256:stranger" in (finding.evidence or "")
    # the project CA's public key unknown (CA in a variable that was not readable): only
    # what needs no fingerprint is judged
    assert ids(cert_host(trusted_ca=instead), ca=UNREAD_CA) == set()


def test_static_keys_left_after_the_switch() -> None:
    static = AuthorizedKey("ssh-ed25519", "SHA256:deploy", "kamal-deploy:shop", "", "ak")
    authority = AuthorizedKey("ssh-ed25519", "SHA256:projectca", "ca",
                              'cert-authority,principals="deploy"', "ak")
    (finding,) = found(cert_host(authorized_keys=(static, authority)))
    assert finding.rule == "KS726"
    assert "kamal-deploy:shop" in finding.message
    assert ids(cert_host(authorized_keys=(authority,))) == set()
    assert ids(cert_host(authorized_keys=None)) == set()  # not read: unknown


def test_no_deploy_key_in_authorized_keys_is_the_goal_in_certificate_mode() -> None:
    """KS718 ("run kamal-secure authorize") would undo what KS726 asks for."""
    retired = cert_host(deploy_fingerprints=("SHA256:deploy",))
    assert "KS718" not in {x.rule for x in host.check_host(retired, HostThresholds(), WHERE,
                                                           None, CA)}
    assert "KS718" in {x.rule for x in host.check_host(retired, HostThresholds(), WHERE,
                                                       None, None)}  # key mode: it must be there


def test_principals_file_or_command_required_when_a_ca_is_trusted() -> None:
    without = CA_CONF + REVOKED + HARDENED
    assert ids(cert_host(sshd=facts(without).sshd)) == {"KS727"}
    command = without + "AuthorizedPrincipalsCommand /usr/local/bin/principals %u\n" \
        "AuthorizedPrincipalsCommandUser nobody\n"
    assert ids(cert_host(sshd=facts(command).sshd)) == set()


def test_revoked_keys_absent_or_missing() -> None:
    absent = HostFile("/etc/ssh/revoked_keys", "absent")
    (finding,) = found(cert_host(revoked_keys=absent))
    assert finding.rule == "KS728"
    assert finding.severity is Severity.HIGH
    assert ids(facts(REVOKED + HARDENED, revoked_keys=absent), ca=None) == {"KS728"}
    unreadable = HostFile("/etc/ssh/revoked_keys", "unreadable")
    assert ids(cert_host(revoked_keys=unreadable)) == set()
    (low,) = found(cert_host(sshd=facts(CA_CONF + PRINCIPALS + HARDENED).sshd))
    assert low.rule == "KS728"
    assert low.severity is Severity.LOW
    assert ids(facts(), ca=None) == set()  # key mode: no RevokedKeys is fine


def test_unknown_sshd_settings_judge_nothing() -> None:
    f = facts(sshd=None, trusted_ca=None, revoked_keys=None, authorized_keys=None)
    assert ids(f) == set()
