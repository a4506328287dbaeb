"""KS751-KS759: drift watch, a host compared with its own approved state.

Raised by :mod:`kamal_secure.audit.drift` (``scan --drift``, and the gate whenever
``.kamal/secure-state.json`` exists); ``Rule.check`` is None. A rule's severity is
the one of the worst change it reports; removals, which shrink what can reach the
host, are reported at low.
"""

from __future__ import annotations

from kamal_secure.report.model import Severity
from kamal_secure.rules.base import Rule

FAMILY = "drift"
STATE_PATH = ".kamal/secure-state.json"
APPROVE = ("If the change was intended, approve it: `kamal-secure snapshot --approve` "
           f"rewrites {STATE_PATH}; commit it so the change is reviewed like code. "
           "Otherwise undo it on the host.")
REFS = ("docs: README.md, section \"Drift watch\"",)


REMOVAL = ((Severity.LOW, "a removal: it shrinks what can reach the host"),)


def _drift(id: str, severity: Severity, title: str, rationale: str, insecure: str,
           secure: str, fix: str = APPROVE,
           also: tuple[tuple[Severity, str], ...] = REMOVAL) -> Rule:
    return Rule(id, severity, title, rationale, fix, insecure, secure, FAMILY, None, REFS,
                STATE_PATH, also, kind="raised")


AUTHORIZED_KEY = _drift(
    "KS751", Severity.HIGH, "An authorized key changed since the approved state",
    "A key that appeared in the deploy user's (or root's) authorized_keys can log in from "
    "now on, whoever added it. New keys and keys whose options changed (a from= restriction "
    "dropped, a forced command removed) are high; a removed key is low.",
    '"authorized_key deploy": {\n  "SHA256:new...": {"comment": "someone@laptop", '
    '"options": "", "type": "ssh-ed25519"}\n}\n',
    '"authorized_key deploy": {\n  "SHA256:approved...": {"comment": "kamal-deploy:shop", '
    '"options": "from=\\"203.0.113.0/24\\"", "type": "ssh-ed25519"}\n}\n')
HOST_KEY = _drift(
    "KS752", Severity.HIGH, "A host key changed since the approved state",
    "The host's own keys identify it to every client. A new or replaced host key means the "
    "host was rebuilt, or that someone can now impersonate it. (The key the connection itself "
    "presents is verified before anything else: a change there stops the check, KS803.)",
    '"hostkey": {\n  "ecdsa-sha2-nistp256": "SHA256:new..."\n}\n',
    '"hostkey": {\n  "ecdsa-sha2-nistp256": "SHA256:approved..."\n}\n')
PRIVILEGED_GROUP = _drift(
    "KS753", Severity.HIGH, "A docker, sudo, wheel or admin group member changed",
    "Members of the docker group control the Docker daemon, which is root on a Kamal host; "
    "sudo, wheel and admin grant root through sudo. A new member (listed in /etc/group, or "
    "with the group as primary group) is high; a removed one is low.",
    '"group": {\n  "docker deploy": "member",\n  "docker intern": "member"\n}\n',
    '"group": {\n  "docker deploy": "member"\n}\n')
SUDOERS = _drift(
    "KS754", Severity.HIGH, "The deploy user's sudo rules changed",
    "What `sudo -l` lists for the deploy user is what a stolen deploy key can do as root. A "
    "new rule is high; a removed one is low.",
    '"sudoers": {\n  "deploy (ALL) NOPASSWD: ALL": ""\n}\n', '"sudoers": {}\n')
LISTENER = _drift(
    "KS755", Severity.MEDIUM, "A listening TCP port changed",
    "A port that started listening is a new way into the host (a debug server, a database "
    "published on 0.0.0.0, a backdoor). A new listener, or a known port now served by another "
    "process, is medium; a listener that went away is low.",
    '"listen": {\n  "0.0.0.0:22": "sshd",\n  "0.0.0.0:5432": "docker-proxy"\n}\n',
    '"listen": {\n  "0.0.0.0:22": "sshd"\n}\n')
SSHD_SETTING = _drift(
    "KS756", Severity.MEDIUM, "An sshd setting changed that no host rule judges",
    "Effective `sshd -T` settings are part of the approved state. Settings a host rule "
    "judges (PasswordAuthentication, PermitRootLogin, ...) are reported once, by that rule, "
    "when their new value is unsafe; every other change (AuthorizedKeysFile, "
    "AuthorizedKeysCommand, Subsystem, UsePAM, ...) is reported here.",
    '"sshd": {\n  "authorizedkeyscommand": "/usr/local/bin/fetch-keys"\n}\n',
    '"sshd": {\n  "authorizedkeyscommand": "none"\n}\n')
CA_KEY = _drift(
    "KS757", Severity.HIGH, "A key in TrustedUserCAKeys changed",
    "Every certificate signed by a key in TrustedUserCAKeys can log in. A new CA key is "
    "high; a removed one is low.",
    '"ca_key": {\n  "SHA256:new...": "ssh-ed25519"\n}\n', '"ca_key": {}\n')
HOST_SET = _drift(
    "KS758", Severity.MEDIUM, "A host is not in the approved state, or no longer in the config",
    "A host in the config that was never approved has no state to compare with: nothing "
    "about it is known to be unchanged (medium). An approved host that left the config "
    "should leave the state too (low).",
    '# deploy.yml lists 203.0.113.11; secure-state.json has only 203.0.113.10\n',
    '# both hosts approved: kamal-secure snapshot --approve\n',
    also=((Severity.LOW, "an approved host that left the config"),))
UNKNOWN = _drift(
    "KS759", Severity.HIGH, "A fact could not be read, so it cannot be called unchanged",
    "A fact that was approved but cannot be read now (a file became unreadable, sudo -n "
    "stopped working) may have changed: it is reported at the severity of the change it "
    "could hide. A fact that could not be read when approved and still cannot is info; one "
    "that is readable now but was not when approved is low until approved again.",
    '"sudoers": "unknown: sudo -n -l as deploy: sudo: a password is required"\n',
    '"sudoers": {\n  "deploy (root) NOPASSWD: /usr/sbin/sshd -T *": ""\n}\n',
    fix="Let the deploy user read the fact (e.g. a sudoers rule for `sudo -n -l`, a readable "
    "file), or run the check as a user who can; then approve again with `kamal-secure "
    "snapshot --approve`.",
    also=((Severity.MEDIUM, "it could hide a medium change (a listener, an sshd setting)"),
          (Severity.LOW, "readable now, not when approved"),
          (Severity.INFO, "unreadable when approved and now")))

RULES: tuple[Rule, ...] = (AUTHORIZED_KEY, HOST_KEY, PRIVILEGED_GROUP, SUDOERS, LISTENER,
                           SSHD_SETTING, CA_KEY, HOST_SET, UNKNOWN)
