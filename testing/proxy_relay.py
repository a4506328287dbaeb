"""A stand-in for `nc %h %p` in ssh.proxy_command tests: relays stdin/stdout to host:port.

Refuses anything but loopback: tests never connect elsewhere.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    if not host.startswith("127."):
        return 2
    sock = socket.create_connection((host, port))
    log = os.environ.get("KS_RELAY_LOG")
    if log:
        with open(log, "a") as handle:  # noqa: PTH123 - a tiny standalone helper
            handle.write(f"{host}:{port}\n")

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
