"""One page per rule, generated from the rule's metadata (docs/rules/<ID>.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from kamal_secure.rules.base import Rule


def page(rule: Rule) -> str:
    refs = "".join(f"- {ref}\n" for ref in rule.references) or "- (none)\n"
    return (
        f"# {rule.id}: {rule.title}\n\n"
        f"Severity: **{rule.severity.label}** · family: {rule.family}\n\n"
        f"## Why\n\n{rule.rationale}\n\n"
        f"## Insecure\n\n```yaml\n{rule.insecure.rstrip()}\n```\n\n"
        f"## Secure\n\n```yaml\n{rule.secure.rstrip()}\n```\n\n"
        f"## Fix\n\n{rule.fix}\n\n"
        f"## References\n\n{refs}"
    )


def expected_pages() -> dict[str, str]:
    from kamal_secure.rules.registry import ALL_RULES

    return {f"{rule.id}.md": page(rule) for rule in ALL_RULES}


def write_pages(directory: Path) -> list[str]:
    """Write one page per rule; remove pages of rules that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    pages = expected_pages()
    for stale in directory.glob("KS*.md"):
        if stale.name not in pages:
            stale.unlink()
    changed = []
    for name, content in pages.items():
        target = directory / name
        if not target.exists() or target.read_text(encoding="utf-8") != content:
            target.write_text(content, encoding="utf-8")
            changed.append(name)
    return changed


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--write":
        sys.stderr.write("usage: python -m kamal_secure.rules.docs --write DIR\n")
        return 2
    changed = write_pages(Path(argv[1]))
    sys.stdout.write(f"{len(changed)} rule page(s) written\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
