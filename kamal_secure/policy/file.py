"""The policy file ``.kamal/secure.yml``: thresholds, rule switches, waivers that expire.

The one reader of that file: everything is checked against kamal_secure/schema/
policy.schema.json first, then built into one typed :class:`Policy` whose defaults are
the dataclass defaults (nothing else defaults a threshold)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from kamal_secure.config import yamlsafe
from kamal_secure.config.load import read_text
from kamal_secure.errors import ConfigError
from kamal_secure.report.model import Severity
from kamal_secure.resources import schema_text
from kamal_secure.rules.host_base import HostThresholds

DEFAULT_PATH = Path(".kamal/secure.yml")
MAX_WAIVER_DAYS = 366


@dataclass(frozen=True)
class Waiver:
    rule: str
    reason: str
    expires: dt.date
    owner: str
    where: str  # policy file:line
    file: str | None = None
    path: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class HostPolicy(HostThresholds):
    """``hosts:``: the host rules' thresholds and how the hosts are reached."""

    concurrency: int = 30
    timeout: float = 20.0  # seconds per host, connection to last byte
    allow_proxy_command: bool = False  # `scan` runs ssh.proxy_command (a local command)


@dataclass(frozen=True)
class CertificatePolicy:
    """``certificates:``: short-lived deploy certificates (minutes)."""

    validity: int = 15  # a minted certificate is valid this long
    minimum: int = 5  # a deploy never starts with a certificate expiring sooner
    source_address: tuple[str, ...] | None = None  # the source-address critical option
    ca: Path | None = None  # the CA private key file; None: facts.keys.DEFAULT_CA_PATH
    rotation_days: int = 365  # the CA key's age limit (KS615)


@dataclass(frozen=True)
class Policy:
    source: str | None = None  # the file it came from, None for defaults
    fail_on: Severity = Severity.HIGH
    report_on: Severity = Severity.INFO
    inline_waivers: bool = True
    key_rotation_days: int = 90
    disabled: frozenset[str] = frozenset()
    severities: dict[str, Severity] = field(default_factory=dict)
    hosts: HostPolicy = field(default_factory=HostPolicy)
    certificates: CertificatePolicy = field(default_factory=CertificatePolicy)
    waivers: tuple[Waiver, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What rules may read (Context.settings)."""
        return {"key_rotation_days": self.key_rotation_days,
                "ca_rotation_days": self.certificates.rotation_days,
                "ca": self.certificates.ca}


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(schema_text("policy.schema.json"))
    return jsonschema.Draft202012Validator(schema)


def load_policy(path: Path | None = None, today: dt.date | None = None) -> Policy:
    """Read the policy file; the defaults when the default file does not exist."""
    explicit = path is not None
    path = path or DEFAULT_PATH
    if not explicit and not path.exists() and not path.is_symlink():
        return Policy()
    name = str(path)
    loaded = yamlsafe.load(read_text(path, name, 256 * 1024), name)
    data = {} if loaded.data is None else loaded.data
    _check_schema(data, loaded, name)
    return _build(data, loaded, name, today or dt.date.today())


def policy_for(root: Path) -> Policy:
    """The policy of the project at ``root``: its file, else the defaults. A file that
    exists but cannot be read or has the wrong shape is an error (exit 2), never the
    defaults."""
    path = root / DEFAULT_PATH
    if not path.exists() and not path.is_symlink():
        return Policy()
    return load_policy(path)


def _line(loaded: yamlsafe.Loaded, where: yamlsafe.Path) -> int:
    for end in range(len(where), -1, -1):
        mark = loaded.marks.get(tuple(where[:end]))
        if mark:
            return mark.line
    return 1


def _check_schema(data: Any, loaded: yamlsafe.Loaded, name: str) -> None:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    from kamal_secure.schemas import describe

    first = errors[0]
    where = ".".join(map(str, first.path)) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise ConfigError(f"{name}:{_line(loaded, tuple(first.path))}: {where}: "
                      f"{describe(first)}{more}")


def _build(data: dict[str, Any], loaded: yamlsafe.Loaded, name: str, today: dt.date) -> Policy:
    from kamal_secure.rules.registry import known

    rules = data.get("rules", {})
    for rule_id in rules:
        if not known(rule_id):
            line = _line(loaded, ("rules", rule_id))
            raise ConfigError(f"{name}:{line}: rules.{rule_id}: no such rule")
    waivers = tuple(_waiver(w, i, loaded, name, today) for i, w in
                    enumerate(data.get("waivers", [])))
    built: dict[str, Any] = {"source": name, "waivers": waivers,
                             "hosts": _hosts(data.get("hosts") or {}, name)}
    if "certificates" in data:
        built["certificates"] = _certificates(data["certificates"] or {}, loaded, name)
    for key in ("fail_on", "report_on"):
        if key in data:
            built[key] = Severity.parse(data[key])
    for key in ("inline_waivers", "key_rotation_days"):
        if key in data:
            built[key] = data[key]
    built["disabled"] = frozenset(r for r, v in rules.items() if v.get("enabled") is False)
    built["severities"] = {r: Severity.parse(v["severity"]) for r, v in rules.items()
                           if "severity" in v}
    return Policy(**built)


def _waiver(raw: dict[str, Any], index: int, loaded: yamlsafe.Loaded, name: str,
            today: dt.date) -> Waiver:
    from kamal_secure.rules.registry import known

    line = _line(loaded, ("waivers", index))
    if not known(raw["rule"]):
        raise ConfigError(f"{name}:{line}: waivers[{index}]: no such rule {raw['rule']}")
    try:
        expires = dt.date.fromisoformat(raw["expires"])
    except ValueError:
        raise ConfigError(f"{name}:{line}: waivers[{index}].expires: "
                          f"{raw['expires']!r} is not a date") from None
    if (expires - today).days > MAX_WAIVER_DAYS:
        raise ConfigError(f"{name}:{line}: waivers[{index}].expires: {expires} is more than "
                          "one year ahead; waivers must be renewed at least yearly")
    return Waiver(raw["rule"], raw["reason"].strip(), expires, raw["owner"], f"{name}:{line}",
                  raw.get("file"), raw.get("path"), raw.get("host"))


def _hosts(section: dict[str, Any], name: str) -> HostPolicy:
    known = {f.name: f for f in fields(HostPolicy)}
    default = HostPolicy()
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{name}: hosts: unknown key {key!r} "
                              f"(known: {', '.join(sorted(known))})")
        changes[key] = _coerce(value, getattr(default, key), f"{name}: hosts.{key}")
    return replace(default, **changes)


def _certificates(section: dict[str, Any], loaded: yamlsafe.Loaded,
                  name: str) -> CertificatePolicy:
    """The schema checked the types and ranges; what it cannot say is checked here."""
    import ipaddress

    default = CertificatePolicy()
    validity = section.get("validity", default.validity)
    minimum = section.get("minimum", default.minimum)
    if minimum >= validity:
        line = _line(loaded, ("certificates", "minimum" if "minimum" in section else "validity"))
        raise ConfigError(f"{name}:{line}: certificates: minimum ({minimum} minutes) must be "
                          f"less than validity ({validity} minutes), or no certificate is "
                          "ever fresh enough")
    addresses = section.get("source_address")
    for index, text in enumerate(addresses or ()):
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            line = _line(loaded, ("certificates", "source_address", index))
            raise ConfigError(f"{name}:{line}: certificates.source_address[{index}]: {text!r} "
                              "is not an address or a CIDR block (as 10.0.0.0/8)") from None
    ca = section.get("ca")
    return CertificatePolicy(validity, minimum,
                             None if addresses is None else tuple(addresses),
                             None if ca is None else Path(ca).expanduser(),
                             section.get("rotation_days", default.rotation_days))


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
