"""KS724-KS728: a host in certificate mode (issue #17): which CA it trusts, what else still
logs in, principals and revocation. "Certificate mode" is the project's: a CA named by the
policy or the environment (HostContext.ca)."""

from __future__ import annotations

from collections.abc import Iterator

from kamal_secure.facts.host import AuthorizedKey
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import Rule
from kamal_secure.rules.host_base import SSHD_REFS, HostContext, host_rule

CA_LINE = "TrustedUserCAKeys /etc/ssh/kamal_ca.pub\n"
PRINCIPALS = "AuthorizedPrincipalsFile /etc/ssh/principals/%u\n"
CERT_REFS = (*SSHD_REFS, "https://man.openbsd.org/ssh-keygen#CERTIFICATES")


def _configured(ctx: HostContext, keyword: str) -> str | None:
    """The setting's value, None when sshd is unknown, "" when it is none."""
    if ctx.sshd is None:
        return None
    value = (ctx.sshd.get(keyword) or "none").strip()
    return "" if value.lower() == "none" else value


def _evidence(ctx: HostContext, keyword: str) -> str | None:
    if ctx.sshd is None:
        return None
    return ctx.evidence(keyword) or f"{keyword} none ({ctx.sshd.source}: not set)"


@host_rule(
    "KS724", Severity.HIGH, "Certificate mode, but the host does not trust the project's CA",
    rationale="In certificate mode the gate logs in with a short-lived certificate signed by "
    "the project's CA. A host without TrustedUserCAKeys (or whose file is missing, empty, or "
    "holds other CAs only) refuses the certificate: the deploy only works while a static "
    "key is still authorized, which is what certificate mode is meant to end.",
    fix="Run `kamal-secure harden --trust-ca` (or install the CA's .pub as "
    "/etc/ssh/kamal_ca.pub, set `TrustedUserCAKeys /etc/ssh/kamal_ca.pub` and reload sshd).",
    insecure="# certificates: {ca: ~/.ssh/kamal_ca} in .kamal/secure.yml\n"
    "# sshd: TrustedUserCAKeys none\n",
    secure=CA_LINE, references=CERT_REFS,
)
def trusts_project_ca(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.ca is None:
        return
    value = _configured(ctx, "trustedusercakeys")
    if value is None:
        return  # unknown: KS722 says so
    if not value:
        yield rule.finding("the project is in certificate mode but sshd trusts no CA "
                           "(TrustedUserCAKeys none)", ctx.where,
                           _evidence(ctx, "trustedusercakeys"))
        return
    found = ctx.facts.trusted_ca
    if found is None or found.state == "unreadable":
        return  # unknown is never absent
    if found.state == "absent":
        yield rule.finding(f"TrustedUserCAKeys names {found.path}, which does not exist: "
                           "sshd trusts no CA", ctx.where, _evidence(ctx, "trustedusercakeys"))
    elif not found.keys:
        yield rule.finding(f"TrustedUserCAKeys {found.path} holds no key: sshd trusts no CA",
                           ctx.where, _evidence(ctx, "trustedusercakeys"))
    elif ctx.ca.fingerprint is not None and \
            ctx.ca.fingerprint not in {k.fingerprint for k in found.keys}:
        yield rule.finding(f"TrustedUserCAKeys {found.path} does not hold the project's CA",
                           ctx.where, f"project CA {ctx.ca.fingerprint}; trusted: "
                           + ", ".join(k.fingerprint for k in found.keys))


@host_rule(
    "KS725", Severity.HIGH, "The host trusts a CA other than the project's",
    rationale="Every CA in TrustedUserCAKeys can sign a certificate that logs in as any user "
    "it names (subject to AuthorizedPrincipalsFile). A CA nobody in the project controls, or "
    "a retired one, is a key to every host that trusts it.",
    fix="Remove the other keys from the TrustedUserCAKeys file (keep the project's CA only; "
    "during a CA rotation keep the new one too, then remove the old) and reload sshd.",
    insecure="# /etc/ssh/kamal_ca.pub\nssh-ed25519 AAAAC3Nza... kamal-secure-ca:2026-01-02\n"
    "ssh-ed25519 AAAAC3Nza... someone-elses-ca\n",
    secure="# /etc/ssh/kamal_ca.pub\nssh-ed25519 AAAAC3Nza... kamal-secure-ca:2026-01-02\n",
    references=CERT_REFS,
)
def other_ca(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    found = ctx.facts.trusted_ca
    if ctx.ca is None or ctx.ca.fingerprint is None or found is None or found.state != "ok":
        return
    for key in found.keys:
        if key.fingerprint != ctx.ca.fingerprint:
            yield rule.finding(f"TrustedUserCAKeys {found.path} also trusts {key.key_type} "
                               f"{key.comment or '(no comment)'}", ctx.where,
                               f"{key.fingerprint}; project CA {ctx.ca.fingerprint}")


def _static(keys: tuple[AuthorizedKey, ...]) -> list[AuthorizedKey]:
    """authorized_keys entries that log in on their own (cert-authority lines name a CA)."""
    return [k for k in keys
            if "cert-authority" not in (part.strip().lower() for part in k.options.split(","))]


@host_rule(
    "KS726", Severity.MEDIUM, "Static keys still log in as the deploy user in certificate mode",
    rationale="Certificate mode replaces the long-lived deploy key with certificates that "
    "expire in minutes. While a static key stays in authorized_keys, whoever holds a copy of "
    "it (an old laptop, a CI cache) still logs in, for as long as the file keeps it.",
    fix="Once every host trusts the CA (KS724 clear): `kamal-secure harden --trust-ca CA.pub "
    "--remove-static-keys` takes the deploy key out of authorized_keys after a certificate-only "
    "login is proven on each host; remove other static keys listed in the finding by hand, "
    "and keep an admin account's own key for a way in that does not need the CA.",
    insecure="# ~deploy/.ssh/authorized_keys in certificate mode\n"
    "ssh-ed25519 AAAAC3Nza... kamal-deploy:shop\n",
    secure="# ~deploy/.ssh/authorized_keys: empty (the CA in TrustedUserCAKeys lets in)\n",
    references=CERT_REFS,
)
def static_keys(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    if ctx.ca is None or ctx.facts.authorized_keys is None:
        return
    for key in _static(ctx.facts.authorized_keys):
        yield rule.finding(f"{key.key_type} key {key.comment or '(no comment)'} still logs in "
                           f"as {ctx.facts.user} ({key.source_file})", ctx.where,
                           key.fingerprint)


@host_rule(
    "KS727", Severity.MEDIUM, "The host trusts a CA without AuthorizedPrincipalsFile",
    rationale="Without AuthorizedPrincipalsFile (or AuthorizedPrincipalsCommand) sshd lets "
    "a certificate in as any account whose name is among its principals: one CA signing "
    "for several users or projects gives each of them every account it names. A principals "
    "file says, per account, which principals may log in.",
    fix="Set `AuthorizedPrincipalsFile /etc/ssh/principals/%u` and list the deploy user's "
    "principal (its name) in /etc/ssh/principals/deploy (root-owned, 0644).",
    insecure=CA_LINE + "AuthorizedPrincipalsFile none\n", secure=CA_LINE + PRINCIPALS,
    references=CERT_REFS,
)
def principals(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    trusted = _configured(ctx, "trustedusercakeys")
    if not trusted:
        return
    if not _configured(ctx, "authorizedprincipalsfile") and \
            not _configured(ctx, "authorizedprincipalscommand"):
        yield rule.finding("TrustedUserCAKeys is set but neither AuthorizedPrincipalsFile nor "
                           "AuthorizedPrincipalsCommand is", ctx.where,
                           _evidence(ctx, "authorizedprincipalsfile"))


@host_rule(
    "KS728", Severity.HIGH, "The RevokedKeys file is absent",
    rationale="sshd refuses public key authentication for everyone when the RevokedKeys file "
    "cannot be read: a missing file locks every key and certificate out (and whoever deletes "
    "it denies all logins). Our own login is refused then too, so such a host usually shows "
    "as KS804 (login failed); this rule names the cause when the facts could still be read. "
    "In certificate mode, without RevokedKeys a leaked certificate or key cannot be revoked "
    "before it expires (low).",
    fix="Create the file (`ssh-keygen -k -f /etc/ssh/revoked_keys` writes an empty KRL; "
    "root-owned, 0644), or remove the RevokedKeys line. In certificate mode keep one, so "
    "that a certificate can be revoked: `ssh-keygen -k -u -f /etc/ssh/revoked_keys -s CA "
    "cert.pub`.",
    insecure="RevokedKeys /etc/ssh/revoked_keys\n# (the file does not exist)\n",
    secure="RevokedKeys /etc/ssh/revoked_keys\n# -rw-r--r-- root root /etc/ssh/revoked_keys\n",
    references=CERT_REFS,
    also=((Severity.LOW, "certificate mode with no RevokedKeys file at all"),),
)
def revoked_keys(rule: Rule, ctx: HostContext) -> Iterator[Finding]:
    found = ctx.facts.revoked_keys
    if found is not None and found.state == "absent":
        yield rule.finding(f"RevokedKeys names {found.path}, which does not exist: sshd "
                           "refuses every public key", ctx.where, _evidence(ctx, "revokedkeys"))
    elif ctx.ca is not None and _configured(ctx, "revokedkeys") == "":
        yield rule.finding("certificate mode without RevokedKeys: a certificate cannot be "
                           "revoked before it expires", ctx.where,
                           _evidence(ctx, "revokedkeys"), severity=Severity.LOW)


RULES: tuple[Rule, ...] = (trusts_project_ca, other_ca, static_keys, principals, revoked_keys)
