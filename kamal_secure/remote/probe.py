"""The live probe: which login methods the running sshd offers Kamal's user.

``auth_none(user)`` is refused with the list of methods that may continue,
after drop-ins and Match blocks for that user and our address. It costs no
MaxAuthTries attempt. Only Kamal's real ssh.user is ever probed: made-up names
show up as "Invalid user" and feed fail2ban.
"""

from __future__ import annotations

import paramiko


def probe_methods(transport: paramiko.Transport, user: str) -> tuple[str, ...] | None:
    """The methods offered to ``user``; ("none",) if it let us in without any; None: unknown."""
    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as err:
        return tuple(str(m) for m in err.allowed_types)
    except (paramiko.SSHException, OSError):
        return None
    return ("none",)
