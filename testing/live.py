"""Write a Kamal project pointing at loopback test hosts and run the host checks on it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from kamal_secure.audit.hosts import audit_hosts
from kamal_secure.report.model import Report
from testing.cli import clean_env
from testing.project import write_project
from testing.sshd import DEPLOY_USER, Client, Host, is_loopback

# the deploy user's keys in ~/.ssh/authorized_keys (each host's own with own_home=True)
USER_FILE = f"Match User {DEPLOY_USER}\n  AuthorizedKeysFile .ssh/authorized_keys\n"


def host_project(root: Path, client: Client, hosts: list[str], user: str = DEPLOY_USER,
                 port: int = 22, extra_ssh: str = "", timeout: float = 5) -> Path:
    """A project whose servers are ``hosts`` (loopback test hosts), reached as ``user`` with
    the client's deploy key."""
    assert hosts, "a project needs at least one host"
    assert all(is_loopback(h) for h in hosts), hosts
    listed = "".join(f"    - {h}\n" for h in hosts)
    return write_project(root, {
        "config/deploy.yml":
            f"service: shop\nimage: acme/shop\nservers:\n  web:\n{listed}"
            f"ssh:\n  user: {user}\n  port: {port}\n  keys: [\"{client.key}\"]\n"
            f"  keys_only: true\n  config: false\n{extra_ssh}",
        ".kamal/secure.yml": f"hosts:\n  timeout: {timeout}\n",
    }, defaults=False)


def scan_hosts(root: Path, allow_proxy_command: bool = False) -> Report:
    return audit_hosts("config/deploy.yml", None, root=root, progress=False,
                       allow_proxy_command=allow_proxy_command)


def rules_by_host(report: Report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for finding in report.findings:
        out.setdefault(finding.location.host or "", set()).add(finding.rule)
    return out


def keys_file(host: Host) -> Path:
    """This host's own authorized_keys (each host has its own ~/.ssh)."""
    return host.user_ssh / "authorized_keys"


def logs_in(key: Path, host: Host, client: Client) -> bool:
    """Whether the real OpenSSH client logs in to ``host`` with ``key`` alone (no agent)."""
    return key.exists() and ssh_run(key, host, client, "true").returncode == 0


def ssh_run(key: Path, host: Host, client: Client,
            command: str) -> subprocess.CompletedProcess[str]:
    """``command`` run on ``host`` as the deploy user by the real OpenSSH client, with ``key``
    alone (no agent), and the host key checked."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={client.home / '.ssh' / 'known_hosts'}",
         "-o", "StrictHostKeyChecking=yes", "-F", "/dev/null", f"{DEPLOY_USER}@{host.addr}",
         command], capture_output=True, text=True, timeout=30, check=False,
        env=clean_env({"HOME": str(client.home)}))


def configured_key(app: Path) -> Path:
    text = (app / "config" / "deploy.yml").read_text()
    match = re.search(r'keys: \[ ?"([^"]+)" ?\]', text)
    assert match, text
    return Path(match.group(1))
