"""Write a Kamal project pointing at loopback test hosts and run the host checks on it."""

from __future__ import annotations

from pathlib import Path

from kamal_secure.audit.hosts import audit_hosts
from kamal_secure.report.model import Report
from tests.conftest import Client
from tests.sshd_hosts import DEPLOY_USER, is_loopback


def write_project(root: Path, client: Client, hosts: list[str], user: str = DEPLOY_USER,
                  port: int = 22, extra_ssh: str = "", timeout: float = 5) -> Path:
    assert all(is_loopback(h) for h in hosts), hosts
    (root / "config").mkdir(parents=True, exist_ok=True)
    listed = "".join(f"    - {h}\n" for h in hosts)
    (root / "config" / "deploy.yml").write_text(
        f"service: shop\nimage: acme/shop\nservers:\n  web:\n{listed}"
        f"ssh:\n  user: {user}\n  port: {port}\n  keys: [\"{client.key}\"]\n"
        f"  keys_only: true\n  config: false\n{extra_ssh}")
    (root / ".kamal").mkdir(exist_ok=True)
    (root / ".kamal" / "secure.yml").write_text(f"hosts:\n  timeout: {timeout}\n")
    return root


def scan_hosts(root: Path, allow_proxy_command: bool = False) -> Report:
    return audit_hosts("config/deploy.yml", None, root=root, progress=False,
                       allow_proxy_command=allow_proxy_command)


def rules_by_host(report: Report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for finding in report.findings:
        out.setdefault(finding.location.host or "", set()).add(finding.rule)
    return out
