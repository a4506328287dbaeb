"""The host-check thresholds the baselines disagree on, from ``.kamal/secure.yml``.

A minimal reader of the ``hosts:`` section only; the full policy file (threshold,
waivers, rule switches) is a separate piece of work and may absorb this.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from kamal_secure.errors import ConfigError
from kamal_secure.report.model import Severity

POLICY_FILE = Path(".kamal/secure.yml")


@dataclass(frozen=True)
class HostPolicy:
    max_auth_tries: int = 4
    login_grace_time: int = 60
    client_alive_interval: int = 300
    client_alive_count_max: int = 3
    tcp_forwarding: tuple[str, ...] = ("no", "local")
    log_levels: tuple[str, ...] = ("VERBOSE", "INFO")
    concurrency: int = 30
    timeout: float = 20.0  # seconds per host, connection to last byte
    # Baselines disagree on these; nothing is checked unless the project says so (KS723).
    banner: str = "any"  # "required" | "none" | "any"
    print_last_log: str = "any"  # "yes" | "no" | "any"
    port: int = 0  # the port sshd must listen on; 0: any
    # KS722 when the effective settings could not be established (unreadable file/Include)
    unknown_severity: str = "high"
    allow_proxy_command: bool = False  # `scan` runs ssh.proxy_command (a local command)


def host_policy_from(section: dict[str, Any] | None) -> HostPolicy:
    """The ``hosts:`` section of an already loaded (and schema-checked) policy file."""
    return _apply(HostPolicy(), section or {}, str(POLICY_FILE))


def load_host_policy(root: Path) -> HostPolicy:
    """The ``hosts:`` section of the project's policy file, which is read and checked whole
    (a file of the wrong shape is an error, exit 2, never the defaults)."""
    from kamal_secure.policy.file import load_policy

    path = root / POLICY_FILE
    if not path.exists() and not path.is_symlink():
        return HostPolicy()
    return host_policy_from(load_policy(path).hosts)


def _apply(policy: HostPolicy, section: dict[str, Any], name: str) -> HostPolicy:
    known = {f.name: f for f in fields(HostPolicy)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{name}: hosts: unknown key {key!r} "
                              f"(known: {', '.join(sorted(known))})")
        default = getattr(policy, key)
        changes[key] = _coerce(value, default, f"{name}: hosts.{key}")
    return replace(policy, **changes)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, tuple):
        items = value if isinstance(value, list) else [value]
        return tuple(_word(v) for v in items)
    if where.endswith(".unknown_severity"):
        try:
            return Severity.parse(str(value)).label
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    if isinstance(default, str):
        return _choice(_word(value), where)
    if isinstance(default, int) and default == 0 and value == 0:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{where}: must be positive")
    return type(default)(value)


def _word(value: Any) -> str:
    """YAML 1.1 reads a bare ``no`` as false: give sshd's word back."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


CHOICES = {"required", "none", "any", "yes", "no"}


def _choice(value: str, where: str) -> str:
    if value not in CHOICES:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(sorted(CHOICES))}")
    return value
