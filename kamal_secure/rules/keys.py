"""KS6xx: the deploy key files named in ssh.keys (facts gathered by kamal_secure.facts.keys)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from kamal_secure.facts.keys import KeyFacts
from kamal_secure.report.model import Finding, Location, Severity
from kamal_secure.rules.base import Context, Rule, define

FAMILY = "keys"
KEYS = "ssh:\n  keys: [\"~/.ssh/kamal_deploy_key\"]\n  keys_only: true\n"


def _where(ctx: Context, key: KeyFacts) -> Location:
    return ctx.at("ssh", "keys", key.index)


def _name(key: KeyFacts) -> str:
    return f"ssh.keys[{key.index}] {key.written}"


@define(
    "KS601", Severity.HIGH, "The deploy key file is missing or not a regular file",
    rationale="Kamal cannot log in with a key that is not there; with keys_only off it then "
    "quietly falls back to whatever other keys it finds.",
    fix="Create the key with `kamal-secure keygen`, or point ssh.keys at the real file.",
    insecure="ssh:\n  keys: [\"~/.ssh/missing_key\"]\n", secure=KEYS, family=FAMILY, kind="keys",
)
def missing(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        if key.file_type == "file" and key.readable:
            continue
        what = {"missing": "does not exist" + (" (dangling symlink)" if key.is_symlink else ""),
                "directory": "is a directory", "device": "is a device, not a key file",
                "file": "cannot be read"}.get(key.file_type, "is not a regular file")
        yield rule.finding(f"{_name(key)}: {key.path} {what}", _where(ctx, key))


@define(
    "KS602", Severity.INFO, "The deploy key is a symlink",
    rationale="A symlinked key is checked where it points; the link itself can be swapped by "
    "anyone who can write to its directory.",
    fix="Point ssh.keys at the key file itself.",
    insecure="ssh:\n  keys: [\"~/.ssh/deploy_link\"]\n", secure=KEYS, family=FAMILY, kind="keys",
)
def symlink(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        if key.is_symlink:
            yield rule.finding(f"{_name(key)} is a symlink to {key.target}", _where(ctx, key))


@define(
    "KS603", Severity.HIGH, "The deploy key file is readable or writable by others",
    rationale="A private key must be readable by its owner alone (0600 or 0400); ssh itself "
    "refuses keys that are not, and anyone else on the machine could copy it.",
    fix="chmod 600 the key file.",
    insecure="$ ls -l ~/.ssh/kamal_deploy_key\n-rw-r--r--  ...\n",
    secure="$ ls -l ~/.ssh/kamal_deploy_key\n-rw-------  ...\n", family=FAMILY, kind="keys",
)
def mode(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        if key.file_type == "file" and key.mode is not None and key.mode not in (0o600, 0o400):
            yield rule.finding(f"{_name(key)} has mode {key.mode:04o}; expected 0600 or 0400",
                               _where(ctx, key))


@define(
    "KS604", Severity.HIGH, "The deploy key file belongs to another user",
    rationale="A key owned by someone else can be replaced or read by them.",
    fix="chown the key to the user who runs kamal.",
    insecure="$ ls -ln ~/.ssh/kamal_deploy_key\n-rw------- 1 1001 1001 ...\n",
    secure="$ ls -ln ~/.ssh/kamal_deploy_key\n-rw------- 1 1000 1000 ...\n",
    family=FAMILY, kind="keys",
)
def owner(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        if key.owner is not None and key.owner != key.current_user:
            yield rule.finding(f"{_name(key)} is owned by uid {key.owner}, not by you "
                               f"(uid {key.current_user})", _where(ctx, key))


@define(
    "KS605", Severity.HIGH, "A directory above the deploy key is writable by others",
    rationale="Whoever can write to a directory on the key's path can swap the key or the "
    "directory under it.",
    fix="chmod go-w the directories listed.",
    insecure="$ ls -ld ~/.ssh\ndrwxrwxrwx ...\n", secure="$ ls -ld ~/.ssh\ndrwx------ ...\n",
    family=FAMILY, kind="keys",
)
def loose_dirs(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        for directory, bits in key.loose_dirs:
            yield rule.finding(f"{_name(key)}: {directory} has mode {bits:04o} (writable by "
                               "group or others)", _where(ctx, key))


@define(
    "KS606", Severity.MEDIUM, "~/.ssh is not 0700",
    rationale="~/.ssh holds private keys and known_hosts; OpenSSH expects it private.",
    fix="chmod 700 ~/.ssh",
    insecure="$ ls -ld ~/.ssh\ndrwxr-xr-x ...\n", secure="$ ls -ld ~/.ssh\ndrwx------ ...\n",
    family=FAMILY, kind="keys",
)
def ssh_dir(rule: Rule, ctx: Context) -> Iterator[Finding]:
    seen = set()
    for key in ctx.keys:
        if key.ssh_dir and key.ssh_dir[1] != 0o700 and key.ssh_dir[0] not in seen:
            seen.add(key.ssh_dir[0])
            yield rule.finding(f"{key.ssh_dir[0]} has mode {key.ssh_dir[1]:04o}, expected 0700",
                               _where(ctx, key))


@define(
    "KS607", Severity.HIGH, "The deploy key is a weak type or too short",
    rationale="DSA is broken and removed from OpenSSH; RSA below 3072 bits is below current "
    "guidance. Ed25519 is short, fast and has a fixed size.",
    fix="Create an ed25519 key: `kamal-secure keygen` (ssh-keygen -t ed25519; it takes no -b).",
    insecure="$ ssh-keygen -t rsa -b 2048 -f ~/.ssh/kamal_deploy_key\n",
    secure="$ ssh-keygen -t ed25519 -f ~/.ssh/kamal_deploy_key\n", family=FAMILY, kind="keys",
    also=((Severity.MEDIUM, "an unusual key type (not ed25519, RSA or ECDSA)"),),
)
def weak(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        info = key.info
        if info is None:
            continue
        if info.kind == "dsa" or (info.kind == "rsa" and info.bits < 3072):
            yield rule.finding(f"{_name(key)} is {info.kind.upper()} {info.bits} bits "
                               f"({info.fingerprint})", _where(ctx, key))
        elif info.kind not in ("ed25519", "rsa", "ecdsa"):
            yield rule.finding(f"{_name(key)} is {info.kind}, not ed25519, RSA >= 3072 or "
                               "ECDSA", _where(ctx, key), severity=Severity.MEDIUM)


@define(
    "KS608", Severity.HIGH, "The deploy key file is not a readable key, or its .pub differs",
    rationale="A file that is not a private key, or a .pub beside it for another key, means "
    "what gets authorized on servers is not what Kamal logs in with.",
    fix="Regenerate the pair with `kamal-secure keygen --force`, or fix the .pub with "
    "`ssh-keygen -y -f KEY > KEY.pub`.",
    insecure="$ ssh-keygen -lf ~/.ssh/kamal_deploy_key.pub   # another key's fingerprint\n",
    secure="$ ssh-keygen -y -f ~/.ssh/kamal_deploy_key > ~/.ssh/kamal_deploy_key.pub\n",
    family=FAMILY, kind="keys",
    also=((Severity.LOW, "no .pub beside the key"),),
)
def pub_mismatch(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        where = _where(ctx, key)
        if key.readable and key.problem:
            yield rule.finding(f"{_name(key)}: {key.problem}", where)
        if key.pub_problem:
            yield rule.finding(f"{_name(key)}.pub: {key.pub_problem}", where)
        elif key.readable and key.info and not key.pub_present:
            yield rule.finding(f"{_name(key)}: no .pub beside it ({key.info.fingerprint})",
                               where, severity=Severity.LOW)
        elif key.info and key.pub_info and key.info.fingerprint != key.pub_info.fingerprint:
            yield rule.finding(f"{_name(key)}.pub is another key: {key.pub_info.fingerprint}, "
                               f"the private key is {key.info.fingerprint}", where)


@define(
    "KS609", Severity.HIGH, "The deploy key is one of your default identities",
    rationale="A default identity (~/.ssh/id_ed25519, id_rsa, ...) is the key you use for "
    "everything else. A deploy key should open the deploy servers and nothing more.",
    fix="Run `kamal-secure keygen --write-config` for a dedicated key, then authorize it.",
    insecure="ssh:\n  keys: [\"~/.ssh/id_ed25519\"]\n", secure=KEYS, family=FAMILY, kind="keys",
)
def default_identity(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        if key.default_identity:
            fp = key.info.fingerprint if key.info else "same fingerprint"
            yield rule.finding(f"{_name(key)} is the same key as {key.default_identity} ({fp})",
                               _where(ctx, key))


@define(
    "KS610", Severity.INFO, "The deploy key is encrypted",
    rationale="An encrypted key is fine; Kamal cannot ask for a passphrase, so it must be "
    "loaded in ssh-agent before kamal runs.",
    fix="ssh-add the key before deploying (CI: load it into an agent).",
    insecure="(no finding for unencrypted keys)\n", secure="$ ssh-add ~/.ssh/kamal_deploy_key\n",
    family=FAMILY, kind="keys",
)
def encrypted(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for key in ctx.keys:
        if key.encrypted:
            yield rule.finding(f"{_name(key)} is passphrase-protected: Kamal will need it in "
                               "ssh-agent", _where(ctx, key))


@define(
    "KS611", Severity.MEDIUM, "The deploy key is older than the rotation policy",
    rationale="Long-lived keys pile up in authorized_keys and in backups; rotating them "
    "limits how long a leaked key stays useful.",
    fix="Rotate it: `kamal-secure keygen --force` (the old pair is kept as a backup), "
    "authorize the new key on every host, deploy with it, then remove the old one from "
    "authorized_keys. The age limit is key_rotation_days in .kamal/secure.yml (default 90).",
    insecure="$ ssh-keygen -lf ~/.ssh/kamal_deploy_key.pub\n"
    "256 SHA256:... kamal-deploy:shop:2024-01-02 (ED25519)\n",
    secure="256 SHA256:... kamal-deploy:shop:<a date within the policy> (ED25519)\n",
    family=FAMILY, kind="keys",
)
def too_old(rule: Rule, ctx: Context) -> Iterator[Finding]:
    limit = int(ctx.settings.get("key_rotation_days", 90))
    today = dt.datetime.now(dt.UTC).date()
    for key in ctx.keys:
        if key.created is None:
            continue
        age = (today - key.created).days
        if age > limit:
            yield rule.finding(f"{_name(key)} is {age} days old (created {key.created}, from "
                               f"the {key.created_source}); the policy allows {limit}",
                               _where(ctx, key))


# Certificate mode's CA key file (issue #17): policy certificates.ca, its .pub beside it.
CA_POLICY = "# .kamal/secure.yml\ncertificates:\n  ca: ~/.ssh/kamal_ca\n"


def _ca_file(ctx: Context) -> KeyFacts | None:
    """The CA private key file when there is one on disk (not in a variable or an agent)."""
    key = ctx.ca.key if ctx.ca is not None else None
    return key if key is not None and key.file_type == "file" else None


def _ca_where(ctx: Context) -> Location:
    return Location(".kamal/secure.yml", path="certificates.ca")


@define(
    "KS612", Severity.CRITICAL, "The CA private key is inside the repository",
    rationale="The CA signs certificates that log in to every host that trusts it. A key file "
    "inside the repository is one `git add .` (or one build context, one backup of the "
    "checkout) away from being published, and every clone of it is a key to the fleet.",
    fix="Move the key out of the repository (`mv .kamal/kamal_ca* ~/.ssh/`), point "
    "certificates.ca at the new place, and if it was ever committed or pushed, make a new CA "
    "(`kamal-secure ca init --force`) and trust only the new one on every host.",
    insecure="# .kamal/secure.yml\ncertificates:\n  ca: .kamal/kamal_ca\n", secure=CA_POLICY,
    family=FAMILY, kind="keys", example_path=".kamal/secure.yml",
)
def ca_in_repository(rule: Rule, ctx: Context) -> Iterator[Finding]:
    key = _ca_file(ctx)
    if key is not None and ctx.ca is not None and ctx.ca.repository is not None:
        yield rule.finding(f"the CA private key {key.path} is inside {ctx.ca.repository}",
                           _ca_where(ctx))


@define(
    "KS613", Severity.HIGH, "The CA private key is readable by other users",
    rationale="Whoever can read the CA key can sign a certificate for any principal the hosts "
    "accept, from anywhere, for as long as they like: more than a stolen deploy key gives.",
    fix="chmod 600 the CA key (and keep its directory private: chmod 700 ~/.ssh).",
    insecure="$ ls -l ~/.ssh/kamal_ca\n-rw-r--r--  ...\n",
    secure="$ ls -l ~/.ssh/kamal_ca\n-rw-------  ...\n",
    family=FAMILY, kind="keys", example_path=".kamal/secure.yml",
)
def ca_mode(rule: Rule, ctx: Context) -> Iterator[Finding]:
    key = _ca_file(ctx)
    if key is not None and key.mode is not None and key.mode & 0o077:
        who = "everyone" if key.mode & 0o004 else "its group"
        yield rule.finding(f"the CA private key {key.path} has mode {key.mode:04o}: {who} "
                           "can read or change it", _ca_where(ctx))


@define(
    "KS614", Severity.MEDIUM, "The CA key is not ed25519",
    rationale="The CA signs every certificate; ed25519 is the type `ca init` makes, short, "
    "fast, with no size to get wrong. RSA and ECDSA CAs work but are easy to leave too short, "
    "and DSA is no longer accepted by OpenSSH.",
    fix="Make a new CA with `kamal-secure ca init` (ed25519), trust it on the hosts beside the "
    "old one, switch certificates.ca, then remove the old CA from TrustedUserCAKeys.",
    insecure="$ ssh-keygen -t rsa -b 2048 -f ~/.ssh/kamal_ca\n",
    secure="$ kamal-secure ca init   # ssh-keygen -t ed25519 -f ~/.ssh/kamal_ca\n",
    family=FAMILY, kind="keys", example_path=".kamal/secure.yml",
)
def ca_type(rule: Rule, ctx: Context) -> Iterator[Finding]:
    key = ctx.ca.key if ctx.ca is not None else None
    info = ctx.ca.env_info if ctx.ca is not None and ctx.ca.env_info is not None else (
        key.info or key.pub_info if key is not None else None)
    if info is not None and info.kind != "ed25519":
        yield rule.finding(f"the CA key is {info.kind} {info.bits} bits ({info.fingerprint}), "
                           "not ed25519", _ca_where(ctx))


@define(
    "KS615", Severity.LOW, "The CA key is older than its rotation policy",
    rationale="A CA key that lives for years has had years to be copied (backups, old "
    "laptops). Certificates expire in minutes; the CA should be rotated too, only less "
    "often. The limit is certificates.rotation_days in .kamal/secure.yml (default 365).",
    fix="Make a new CA (`kamal-secure ca init --path ~/.ssh/kamal_ca_new`), trust it on every "
    "host beside the old one, point certificates.ca at it, deploy, then remove the old CA "
    "from TrustedUserCAKeys.",
    insecure="$ ssh-keygen -lf ~/.ssh/kamal_ca.pub\n"
    "256 SHA256:... kamal-secure-ca:2023-01-02 (ED25519)\n",
    secure="256 SHA256:... kamal-secure-ca:<a date within the policy> (ED25519)\n",
    family=FAMILY, kind="keys", example_path=".kamal/secure.yml",
)
def ca_too_old(rule: Rule, ctx: Context) -> Iterator[Finding]:
    key = ctx.ca.key if ctx.ca is not None else None
    if key is None or key.created is None or not (key.pub_present or key.file_type == "file"):
        return
    limit = int(ctx.settings.get("ca_rotation_days", 365))
    age = (dt.datetime.now(dt.UTC).date() - key.created).days
    if age > limit:
        yield rule.finding(f"the CA key {key.path} is {age} days old (created {key.created}, "
                           f"from the {key.created_source}); the policy allows {limit}",
                           _ca_where(ctx))


RULES: tuple[Rule, ...] = (missing, symlink, mode, owner, loose_dirs, ssh_dir, weak, pub_mismatch,
                           default_identity, encrypted, too_old, ca_in_repository, ca_mode,
                           ca_type, ca_too_old)
