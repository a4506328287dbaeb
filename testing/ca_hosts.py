"""Shared by the `ca rotate` tests: hosts that trust a CA and hold no static key, and
certificates made by the real ssh-keygen (never by our code)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from testing.harden import SUDO
from testing.live import USER_FILE, keys_file, logs_in
from testing.sshd import DEPLOY_USER, HARDENED, Client, Host, Lab, fingerprint, next_addr

TRUST = ("TrustedUserCAKeys /etc/ssh/kamal-secure-ca.pub\n"
         "AuthorizedPrincipalsFile /etc/ssh/kamal-secure-principals/%u\n")
CA_FILE = "kamal-secure-ca.pub"  # in the host's /etc/ssh


def line(pub: Path) -> str:
    """A public key as the hosts hold it: type and base64."""
    return " ".join(pub.read_text().split()[:2])


def ca_host(lab: Lab, client: Client, ca_pub: Path) -> Host:
    """A host whose deploy user logs in only with a certificate of the CA (no static key;
    passwordless sudo, as `harden --trust-ca` needs too)."""
    host = lab.start(next_addr(), HARDENED + USER_FILE + TRUST, sudoers=SUDO, own_home=True,
                     files={f"kamal-secure-principals/{DEPLOY_USER}": DEPLOY_USER + "\n"})
    client.trust(host.known_line())
    trust_only(host, ca_pub)
    entry = pwd.getpwnam(DEPLOY_USER)
    keys_file(host).write_text("")
    os.chown(keys_file(host), entry.pw_uid, entry.pw_gid)
    keys_file(host).chmod(0o600)
    assert not logs_in(client.key, host, client)
    return host


def trust_only(host: Host, ca_pub: Path) -> None:
    host.write(CA_FILE, line(ca_pub) + "\n")


def trusted(host: Host) -> list[str]:
    return (host.etc / CA_FILE).read_text().splitlines()


def certified(client: Client, ca: Path, where: Path) -> Path:
    """A copy of the deploy key with a certificate of ``ca`` beside it (ssh-keygen -s),
    checked with ssh-keygen -L."""
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = where / ca.name
    shutil.copy(client.key, copy)
    copy.chmod(0o600)
    shutil.copy(f"{client.key}.pub", f"{copy}.pub")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "test", "-n", DEPLOY_USER,
                    "-V", "+10m", f"{copy}.pub"], check=True)
    listed = subprocess.run(["ssh-keygen", "-L", "-f", f"{copy}-cert.pub"], capture_output=True,
                            text=True, check=True).stdout
    assert f"Signing CA: ED25519 {fingerprint(ca.with_name(ca.name + '.pub'))}" in listed
    return copy


def cert_logs_in(client: Client, ca: Path, host: Host, where: Path) -> bool:
    """Whether the OpenSSH client logs in to ``host`` with a certificate of ``ca`` alone."""
    if not ca.exists():
        return False
    return logs_in(certified(client, ca, where / f"c-{host.addr}"), host, client)
