"""Does a literal string look like a secret? Vendor patterns plus keyword keys with entropy.

After gitleaks: known token shapes (and URLs with a password) match on their
own; a key named like a password (password, passwd, passphrase, pass, pwd)
holding a literal is a secret whatever its entropy (a placeholder such as
``changeme`` still is, at a lower severity); anything else needs a keyword in
its key name (secret, token, key, credential...) and a Shannon entropy of at
least 3.5 bits per character. References are never secrets:
``$VAR``, ``${VAR}``, ``$(command)``, ERB output, and Kamal secret names
(``KAMAL_REGISTRY_PASSWORD``). Callers show values only through ``redact``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from kamal_secure.config.erb import DYNAMIC

VENDOR: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"\b(AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b")),
    ("GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Slack webhook", re.compile(r"hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/\w+")),
    ("Stripe key", re.compile(r"\b[sr]k_(live|test)_[A-Za-z0-9]{16,}")),
    ("Docker Hub token", re.compile(r"\bdckr_pat_[A-Za-z0-9_-]{20,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("SendGrid key", re.compile(r"\bSG\.[\w-]{16,}\.[\w-]{16,}")),
    ("npm token", re.compile(r"\bnpm_[A-Za-z0-9]{36}")),
    ("private key block", re.compile(r"-----BEGIN[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----")),
    ("URL with a password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]*:([^\s/@]+)@")),
)
KEYWORD = re.compile(r"(?i)(pass(word|wd|phrase)?|secret|token|api_?key|access_?key|private_?key|"
                     r"credential|auth|salt|signing|encryption_?key|master_?key|_key$|^key$)")
PLAIN_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^@\s]*$")
REFERENCE = re.compile(r"^(\$\{?[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}?|\$\(.*\)|`.*`"
                       r"|op://[^\n]+)$", re.DOTALL)  # op://: a 1Password secret reference
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*(:[A-Z][A-Z0-9_]*)?$")
MIN_ENTROPY = 3.5
MIN_LENGTH = 8
PASSWORD_NAME = re.compile(r"(?i)(password|passwd|passphrase|(^|[_.-])(pass|pwd|pw)($|[_.-]))")
# Settings about passwords, not passwords: PASSWORD_MIN_LENGTH, DB_PASSWORD_FILE, ...
SETTING_NAME = re.compile(r"(?i)[_.-](length|min|max|file|path|dir|policy|enabled|required|"
                          r"expiry|expires|ttl|timeout|header|field|param|complexity|strength|"
                          r"reset|hash|algorithm|rounds|cost|mode|url|uri|host|port|user(name)?)$")
PLACEHOLDER = re.compile(r"(?i)^(change[_-]?me\w*|replace[_-]?me\w*|password|secret|example\w*|"
                         r"placeholder|dummy|todo|tbd|x{3,}|\*{3,}|\.{3}|<[^>]*>|\{\{.*\}\}|"
                         r"your[_-]\w+)$")
NAME_AS_VALUE = re.compile(r"^[A-Z][A-Z0-9_]*$")  # a secret's name where Kamal substitutes none
WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "nil", ""})


@dataclass(frozen=True)
class Verdict:
    """Why a value looks like a hardcoded secret; ``placeholder`` lowers the severity."""

    why: str
    placeholder: bool = False


def entropy(value: str) -> float:
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def is_reference(value: str) -> bool:
    """A value that names a secret instead of holding it (or that ERB produces)."""
    text = value.strip()
    return (not text or DYNAMIC in text or bool(REFERENCE.match(text))
            or bool(SECRET_NAME.match(text)))


def vendor_match(value: str) -> str | None:
    for name, pattern in VENDOR:
        match = pattern.search(value)
        if match is None:
            continue
        if name == "URL with a password" and _is_ref_part(match.group(1)):
            continue
        return name
    return None


def _is_ref_part(password: str) -> bool:
    return password.startswith("$") or DYNAMIC in password or password.startswith("%")


def secret_name(key: str) -> bool:
    """A key that says it holds a secret; for dotted label keys, its last part (or basicauth)."""
    return bool(KEYWORD.search(key.rsplit(".", 1)[-1])) or "basicauth" in key.lower()


def password_name(key: str) -> bool:
    """A key that names a password itself, not a setting about passwords."""
    last = key.rsplit(".", 1)[-1]
    return bool(PASSWORD_NAME.search(last)) and not SETTING_NAME.search(last)


def placeholder(text: str) -> bool:
    return bool(PLACEHOLDER.match(text.strip()) or NAME_AS_VALUE.match(text.strip()))


def url_password(text: str) -> str | None:
    """The password part of the first URL with credentials in ``text`` (not a reference)."""
    match = VENDOR[-1][1].search(text)
    if match is None or _is_ref_part(match.group(1)):
        return None
    return match.group(1)


def verdict(key: str, value: object) -> Verdict | None:
    """Why ``value`` (set under ``key``) looks like a hardcoded secret, or None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    if DYNAMIC in text:
        return None
    found = vendor_match(text)
    if found:
        password = url_password(text) if found == "URL with a password" else None
        return Verdict(found, placeholder=password is not None and placeholder(password))
    if is_reference(text) or PLAIN_URL.match(text) or not secret_name(key):
        return None
    if password_name(key) and text.strip().lower() not in WORDS:
        return Verdict(f"a literal under a password name ({key})", placeholder(text))
    if len(text) >= MIN_LENGTH and entropy(text) >= MIN_ENTROPY:
        return Verdict(f"high-entropy value under a secret-like name ({key})")
    return None


def looks_secret(key: str, value: object) -> str | None:
    """Why ``value`` (set under ``key``) looks like a hardcoded secret, or None."""
    found = verdict(key, value)
    return found.why if found else None
