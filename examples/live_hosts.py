"""The live part of `make demo`: two throwaway loopback hosts behind the gate.

One host is configured like a fresh cloud image (main sshd_config says
`PasswordAuthentication no`, cloud-init's drop-in says `yes`, and the drop-in
wins); the other is hardened. Both are real OpenSSH sshd processes on
127.55.200.x, each in its own mount namespace with its own /etc/ssh (the test
suite's harness, testing/sshd.py). The hardened example app is pointed at
each in turn: the gate refuses the first and lets kamal run for the second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from testing.sshd import (  # the repository root goes on the path first
    DEPLOY_USER,
    HARDENED,
    Lab,
    can_run_sshd,
    ensure_user,
    remove_user,
)

CLOUD_IMAGE = "PasswordAuthentication no\n"  # what the admin wrote; the drop-in wins
CLOUD_DROP_IN = {"sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
DOC_ADDRESSES = ("203.0.113.10", "203.0.113.11")


def why_not() -> str | None:
    return can_run_sshd()


def point_app(app: Path, addr: str, key: Path, known_line: str) -> None:
    deploy = app / "config" / "deploy.yml"
    text = deploy.read_text()
    for doc in DOC_ADDRESSES:
        text = text.replace(doc, addr)
    text = text.replace("user: deploy", f"user: {DEPLOY_USER}")
    text = text.replace('keys: ["~/.ssh/kamal_deploy_key"]', f'keys: ["{key}"]')
    deploy.write_text(text)
    (app / ".kamal" / "known_hosts").write_text(known_line)  # pinned for the project


def run(base: Path, home: Path, source: Path, gate: Callable[[Path, Path, dict[str, str]], int]
        ) -> dict[str, int]:
    created = subprocess.run(["id", DEPLOY_USER], capture_output=True,
                             check=False).returncode != 0
    ensure_user(DEPLOY_USER)
    hosts_dir = base / "hosts"
    hosts_dir.mkdir(mode=0o755)
    base.chmod(0o755)
    lab = Lab(hosts_dir)
    key = home / ".ssh" / "kamal_deploy_key"
    public = (home / ".ssh" / "kamal_deploy_key.pub").read_text().strip()
    results: dict[str, int] = {}
    try:
        for name, addr, config, files in (
            ("fresh-cloud-host", "127.55.200.2", CLOUD_IMAGE, CLOUD_DROP_IN),
            ("hardened-host", "127.55.200.3", HARDENED, {}),
        ):
            host = lab.start(addr, config, files=files, authorized={
                DEPLOY_USER: f'from="127.0.0.0/8" {public}'})
            app = base / name
            shutil.copytree(source, app)
            point_app(app, addr, key, host.known_line())
            print(f"\n=== {name}: hardened-app deploying to a real sshd on {addr}", flush=True)
            results[name] = gate(app, home, {})
            print(f"(exit status {results[name]})", flush=True)
    finally:
        lab.stop_all()
        if created:
            remove_user(DEPLOY_USER)
    return results


if __name__ == "__main__":
    print(why_not() or "live demo possible", file=sys.stderr)
    sys.exit(0 if os.geteuid() == 0 else 1)
