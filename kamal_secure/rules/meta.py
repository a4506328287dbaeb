"""KS9xx: findings about the policy and its waivers (raised by kamal_secure.policy.waivers)."""

from __future__ import annotations

from kamal_secure.report.model import Severity
from kamal_secure.rules.base import Rule

FAMILY = "policy"

WAIVER_EXPIRED = Rule(
    "KS901", Severity.MEDIUM, "A waiver has expired",
    rationale="Waivers carry an expiry date so that accepted risks are looked at again. Once "
    "the date has passed the waived finding counts again, and this finding says why.",
    fix="Fix the waived finding, or renew the waiver with a new reason and expiry date.",
    insecure="waivers:\n  - rule: KS301\n    reason: legacy worker needs it\n"
    "    expires: 2020-01-31\n    owner: ops@example.com\n",
    secure="waivers:\n  - rule: KS301\n    reason: legacy worker needs it, ticket OPS-12\n"
    "    expires: 2027-01-31\n    owner: ops@example.com\n",
    family=FAMILY,
    kind="raised",
)
WAIVER_UNUSED = Rule(
    "KS902", Severity.LOW, "A waiver matched no finding",
    rationale="A waiver that matches nothing is stale: the finding was fixed or the waiver's "
    "file, path or host is wrong. Stale waivers hide future findings that happen to match.",
    fix="Delete the waiver, or correct its rule, file, path or host.",
    insecure="waivers:\n  - rule: KS301\n    file: config/old.yml\n    reason: gone\n"
    "    expires: 2027-01-31\n    owner: ops@example.com\n",
    secure="waivers: []\n",
    family=FAMILY,
    kind="raised",
)
INLINE_NO_REASON = Rule(
    "KS903", Severity.MEDIUM, "An inline waiver has no reason",
    rationale="An inline `# kamal-secure: ignore` comment without a reason hides a finding "
    "without telling the next reader why. It is not honoured.",
    fix="Write the reason after the rule id: `# kamal-secure: ignore KS301 -- why`.",
    insecure="    options:\n      privileged: true  # kamal-secure: ignore KS301\n",
    secure="    options:\n      privileged: true  # kamal-secure: ignore KS301 -- GPU driver "
    "needs it, OPS-12\n",
    family=FAMILY,
    kind="raised",
)

RULES: tuple[Rule, ...] = (WAIVER_EXPIRED, WAIVER_UNUSED, INLINE_NO_REASON)
