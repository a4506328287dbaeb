"""ssh.proxy_command for test hosts in their own network namespace (Lab.start(netns=True)).

``ns_relay.py ADDR=PID... HOST PORT``: enter the namespace of the sshd that serves HOST and
relay stdin/stdout there (testing/proxy_relay.py). Loopback only, like every test connection.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    *pairs, host, port = sys.argv[1:]
    pids = dict(pair.split("=", 1) for pair in pairs)
    if not host.startswith("127.") or host not in pids:
        return 2
    relay = str(Path(__file__).resolve().parent / "proxy_relay.py")
    os.execvp("nsenter", ["nsenter", "-t", pids[host], "-n", "--", sys.executable, relay,
                          host, port])


if __name__ == "__main__":
    sys.exit(main())
