"""Parse an authorized_keys file into fingerprints and options. Pure; never keeps key blobs."""

from __future__ import annotations

import base64
import binascii
import hashlib

from kamal_secure.facts.host import AuthorizedKey

KEY_TYPES = ("ssh-", "ecdsa-", "sk-")


def blob_fingerprint(blob_b64: str) -> str | None:
    try:
        raw = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse_authorized_keys(text: str, source: str) -> list[AuthorizedKey]:
    keys = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key = _parse_line(line, source)
            if key is not None:
                keys.append(key)
    return keys


def _parse_line(line: str, source: str) -> AuthorizedKey | None:
    options = ""
    if not line.startswith(KEY_TYPES):
        options, line = _split_options(line)
    parts = line.split(None, 2)
    if len(parts) < 2:
        return None
    fingerprint = blob_fingerprint(parts[1])
    if fingerprint is None:
        return None
    comment = parts[2] if len(parts) > 2 else ""
    return AuthorizedKey(parts[0], fingerprint, comment, options, source)


def _split_options(line: str) -> tuple[str, str]:
    """Options end at the first space outside double quotes."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return line[:i], line[i:].strip()
    return line, ""
