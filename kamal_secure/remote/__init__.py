"""Everything that talks to hosts. Only this package imports paramiko, and only lazily:
``facts`` and ``sshd_config`` are plain data and parsing, safe to import anywhere."""

import sys

# paramiko imports invoke (about 0.4 s, the largest part of importing paramiko) only to run
# `Match exec` lines of its own SSHConfig, which kamal-secure never uses (ssh_config files are
# resolved by remote.ssh_config). Without invoke, paramiko records the ImportError and would
# raise it only for `Match exec`. Imported earlier by someone else, it stays as it is.
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
