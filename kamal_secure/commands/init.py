"""`kamal-secure init-policy`: write a commented starter policy to .kamal/secure.yml."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from kamal_secure.commands import Parser
from kamal_secure.errors import EXIT_CLEAN, UsageError
from kamal_secure.fileio import write_atomic
from kamal_secure.policy.file import DEFAULT_PATH, load_policy

STARTER = """\
# kamal-secure policy. Checked by `kamal-secure scan` and by the gate in front of
# `kamal deploy`. Schema: schema/policy.schema.json. Every key is optional.
version: 1

# Exit 1 (and refuse to run kamal) at this severity and above:
# critical, high, medium, low or info.
fail_on: high
# Findings below this severity are not shown at all.
report_on: info

# Honour `# kamal-secure: ignore KSxxx -- reason` comments in deploy.yml.
# CI can set this to false (or pass --no-inline-waivers).
inline_waivers: true

# Rotate the deploy key after this many days.
key_rotation_days: 90

# Switch rules off or change their severity.
rules: {}
#  KS102: {severity: high}
#  KS502: {enabled: false}

# Live host checks: sshd settings the common baselines disagree on, and how
# hosts are reached.
hosts:
  max_auth_tries: 4
  login_grace_time: 60
  client_alive_interval: 300
  client_alive_count_max: 3
  tcp_forwarding: [no, local]
  log_levels: [VERBOSE, INFO]
  banner: any            # required | none | any
  print_last_log: any    # yes | no | any
  port: 0                # the port sshd must listen on; 0: any
  concurrency: 30
  timeout: 20            # seconds per host
  unknown_severity: high # KS722: sshd settings that could not be established

# Accepted risks. Each needs a reason, an owner and an expiry date at most a
# year ahead; an expired waiver counts again, an unused one is reported.
waivers: []
#  - rule: KS301
#    file: config/deploy.yml             # optional glob
#    path: servers.workers.options.*     # optional YAML path glob
#    host: "10.0.0.*"                    # optional host glob
#    reason: GPU driver needs a privileged container (OPS-123)
#    expires: {expiry}
#    owner: ops@example.com
"""


def run(args: list[str]) -> int:
    parser = Parser(prog="kamal-secure init-policy", description="Write a starter policy file.")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--force", action="store_true", help="overwrite an existing policy")
    opts = parser.parse_args(args)
    path: Path = opts.path
    if path.exists() and not opts.force:
        raise UsageError(f"{path} exists already", hint="pass --force to overwrite it")
    expiry = (dt.date.today() + dt.timedelta(days=90)).isoformat()
    write_atomic(path, STARTER.replace("{expiry}", expiry))
    load_policy(path)  # what we write must be valid
    sys.stdout.write(f"kamal-secure: wrote {path}\n")
    return EXIT_CLEAN
