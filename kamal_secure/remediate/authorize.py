"""Put the dedicated public key in the deploy user's authorized_keys, as ssh-copy-id does.

Idempotent (keys are compared by their key data, not the whole line), atomic on the host
and verified (:data:`actions.PUT`: a temporary file beside authorized_keys, renamed over it
only when its length and SHA-256 match what was sent), compare-and-swap (the file is only
replaced if nobody changed it since it was read), then proven: a new connection with the
dedicated key alone must log in, otherwise the previous file is put back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kamal_secure.errors import UsageError
from kamal_secure.facts.keys import parse_public

PATH = ".ssh/authorized_keys"  # under $HOME
READ = 'f="$HOME/.ssh/authorized_keys"; if [ -f "$f" ]; then cat "$f"; fi'

if TYPE_CHECKING:
    from kamal_secure.remote.session import Session


@dataclass(frozen=True)
class Change:
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def key_line(public_line: str, from_cidr: str | None) -> tuple[str, str]:
    """(the line to install, the key's base64 data)."""
    parse_public(public_line)
    kind, data, *rest = public_line.split()
    comment = f" {' '.join(rest)}" if rest else ""
    options = ""
    if from_cidr:
        try:
            network = ipaddress.ip_network(from_cidr, strict=False)
        except ValueError:
            raise UsageError(f"--from {from_cidr!r} is not an address or CIDR") from None
        options = f'from="{network}" '
    return f"{options}{kind} {data}{comment}", data


def merged(current: str, line: str, data: str) -> Change:
    """The file with exactly one line for this key, in the place of the first old one."""
    out, placed = [], False
    for raw in current.splitlines():
        if data in raw.split():
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(raw)
    if not placed:
        out.append(line)
    return Change(current, "\n".join(out) + "\n")


def without(current: str, data: str) -> Change:
    """The file with every line for this key removed."""
    kept = [raw for raw in current.splitlines() if data not in raw.split()]
    return Change(current, "".join(line + "\n" for line in kept))


def apply_change(sess: Session, change: Change) -> tuple[bool, str]:
    """Write ``change`` on the host (compare-and-swap); (ok, message)."""
    from kamal_secure.remote import actions

    if not change.changed:
        return True, "unchanged"
    code, out = actions.put(sess, PATH, change.after.encode(), "600",
                            before=change.before.encode(), dir_mode="700")
    return code == 0, out.strip()[:200]


def read_current(sess: Session) -> str:
    from kamal_secure.errors import CheckIncomplete
    from kamal_secure.remote import actions

    code, current = actions.script(sess, READ)
    if code != 0:
        raise CheckIncomplete(f"cannot read authorized_keys: {current.strip()[:200]}")
    return current
