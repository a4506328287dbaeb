"""One page per rule, generated from the rule's metadata (docs/rules/<ID>.md)."""

from __future__ import annotations

from kamal_secure.rules.base import Rule


def page(rule: Rule) -> str:
    lang = "sshd" if rule.family == "host" else "yaml"
    refs = "".join(f"- {ref}\n" for ref in rule.references) or "- (none)\n"
    return (
        f"# {rule.id}: {rule.title}\n\n"
        f"Severity: **{rule.severity.label}** · family: {rule.family}\n\n"
        f"## Why\n\n{rule.rationale}\n\n"
        f"## Insecure\n\n```{lang}\n{rule.insecure.rstrip()}\n```\n\n"
        f"## Secure\n\n```{lang}\n{rule.secure.rstrip()}\n```\n\n"
        f"## Fix\n\n{rule.fix}\n\n"
        f"## References\n\n{refs}"
    )
