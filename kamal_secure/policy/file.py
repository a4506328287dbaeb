"""The policy file ``.kamal/secure.yml``: thresholds, rule switches, waivers that expire."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kamal_secure.config import yamlsafe
from kamal_secure.config.load import read_text
from kamal_secure.errors import ConfigError
from kamal_secure.report.model import Severity
from kamal_secure.resources import schema_text

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
class Policy:
    source: str | None = None  # the file it came from, None for defaults
    fail_on: Severity = Severity.HIGH
    report_on: Severity = Severity.INFO
    inline_waivers: bool = True
    key_rotation_days: int = 90
    disabled: frozenset[str] = frozenset()
    severities: dict[str, Severity] = field(default_factory=dict)
    hosts: dict[str, Any] = field(default_factory=dict)  # read by host_policy too
    waivers: tuple[Waiver, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What rules may read (Context.settings)."""
        return {"key_rotation_days": self.key_rotation_days, "hosts": dict(self.hosts)}


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(schema_text("policy.schema.json"))
    return jsonschema.Draft202012Validator(schema)


def load_policy(path: Path | None = None, today: dt.date | None = None) -> Policy:
    """Read the policy file; the defaults when the default file does not exist."""
    explicit = path is not None
    path = path or DEFAULT_PATH
    if not explicit and not path.exists():
        return Policy()
    name = str(path)
    loaded = yamlsafe.load(read_text(path, name, 256 * 1024), name)
    data = {} if loaded.data is None else loaded.data
    _check_schema(data, loaded, name)
    return _build(data, loaded, name, today or dt.date.today())


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
    return Policy(
        source=name,
        fail_on=Severity.parse(data.get("fail_on", "high")),
        report_on=Severity.parse(data.get("report_on", "info")),
        inline_waivers=data.get("inline_waivers", True),
        key_rotation_days=data.get("key_rotation_days", 90),
        disabled=frozenset(r for r, v in rules.items() if v.get("enabled") is False),
        severities={r: Severity.parse(v["severity"]) for r, v in rules.items()
                    if "severity" in v},
        hosts=data.get("hosts", {}),
        waivers=waivers,
    )


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
