"""Real OpenSSH sshd test hosts on loopback, each with its own /etc/ssh.

Each host is ``/usr/sbin/sshd -D -e`` started in its own mount namespace
(``unshare -m``) with its directory bind-mounted on /etc/ssh, so that ``sshd -T``
run through that host reads that host's files, as on a real server. Hosts
listen on 127.55.x.y (all of 127/8 is loopback); they are stopped by PID and
reaped. Only loopback addresses are ever used.

A host started with ``old=True`` runs Debian bullseye's OpenSSH 8.4p1
(scripts/install-old-sshd.sh): its wrapper is bind-mounted over /usr/sbin/sshd in
that host's namespace, so the daemon and every ``sshd -t``/``sshd -T`` a session runs
there is the old one.
"""

from __future__ import annotations

import itertools
import os
import pwd
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from testing.cli import REPO, clean_env

SSHD = Path(os.environ.get("KAMAL_SECURE_TEST_SSHD", "/usr/sbin/sshd"))  # override: tests
# the wrapper scripts/install-old-sshd.sh prints (`make test` passes it; empty: it failed)
OLD_SSHD = os.environ.get("KAMAL_SECURE_TEST_OLD_SSHD",
                          str(REPO / ".e2e" / "old-sshd" / "bin" / "sshd"))
MOUNT_AND_RUN = (
    'mount --bind "$0" /etc/ssh && '
    '{ [ ! -d "$1" ] || [ ! -d /etc/sudoers.d ] || mount --bind "$1" /etc/sudoers.d; } && '
    '{ [ -z "$2" ] || mount --bind "$2" "$3"; } && '
    '{ [ -z "$4" ] || mount --bind "$4" /usr/sbin/sshd; } && '
    "exec /usr/sbin/sshd -D -e"
)
NETNS_UP = "ip link set lo up && "  # a host with its own network namespace: only its sockets
DEPLOY_USER = "kshdeploy"
BASE = """\
Include /etc/ssh/sshd_config.d/*.conf
ListenAddress {addr}:{port}
PidFile {piddir}/sshd.pid
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
UsePAM no
KbdInteractiveAuthentication no
"""
HARDENED = """\
PasswordAuthentication no
PermitRootLogin no
AllowUsers kshdeploy
MaxAuthTries 3
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
LoginGraceTime 30
ClientAliveInterval 300
ClientAliveCountMax 2
LogLevel VERBOSE
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org
"""
# HARDENED for OpenSSH 8.4 (old=True): without sntrup761 (8.5 added it; 8.4 refuses to start),
# and with ChallengeResponseAuthentication, which turns keyboard-interactive off before 8.7
# (BASE's KbdInteractiveAuthentication is accepted there and does nothing)
HARDENED_OLD = (HARDENED.replace("sntrup761x25519-sha512@openssh.com,", "")
                + "ChallengeResponseAuthentication no\n")


def is_loopback(addr: str) -> bool:
    return addr.startswith("127.")


def ensure_user(name: str) -> None:
    if subprocess.run(["id", name], capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    subprocess.run(["usermod", "-p", "*", name], check=True)  # no password, not locked


def remove_user(name: str) -> None:
    subprocess.run(["userdel", "-r", name], capture_output=True, check=False)


def keygen(path: Path, comment: str = "kamal-deploy:test", *, kind: str = "ed25519",
           options: tuple[str, ...] = (), passphrase: str = "", replace: bool = False) -> str:
    """A new key pair at ``path`` (ssh-keygen ``-t kind``, ``options`` such as ``-b 2048``);
    ``replace``: over an existing one. Returns the public line."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if replace:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *options, "-N", passphrase, "-C", comment,
                    "-f", str(path)], check=True)
    return (path.with_name(path.name + ".pub")).read_text().strip()


def listed(cert: Path) -> dict[str, list[str]]:
    """``ssh-keygen -L`` of ``cert``: each field's values (indented lines belong to the field
    above them), in UTC."""
    out = subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], capture_output=True,
                         text=True, check=True, env=clean_env({"TZ": "UTC"})).stdout
    fields: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines()[1:]:
        depth = len(line) - len(line.lstrip("\t "))
        text = line.strip()
        if depth <= 8:
            current, _, value = text.partition(": ")
            current = current.rstrip(":")
            fields[current] = [value] if value else []
        else:
            fields[current].append(text)
    return fields


def fingerprint(path: Path) -> str:
    """``ssh-keygen -lf``: the key's ``SHA256:...`` fingerprint."""
    return subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


_addresses = itertools.count(os.getpid() % 50 * 100)


def next_addr() -> str:
    """A loopback address no other test of this run uses."""
    n = next(_addresses)
    return f"127.55.{n // 200 % 250}.{n % 200 + 2}"


@dataclass
class Client:
    """The machine kamal-secure runs on: its HOME, deploy key and known_hosts."""

    home: Path
    key: Path
    public: str  # "ssh-ed25519 AAAA... comment"

    def trust(self, *lines: str) -> None:
        with (self.home / ".ssh" / "known_hosts").open("a") as handle:
            handle.writelines(lines)


@dataclass
class Host:
    addr: str
    port: int
    root: Path
    process: subprocess.Popen[bytes] | None = None
    public_key: str = ""  # "ssh-ed25519 AAAA..."
    netns: bool = False  # own network namespace: reach it with testing/ns_relay.py
    sshd: Path | None = None  # bind-mounted over /usr/sbin/sshd on this host (old=True)

    @property
    def etc(self) -> Path:
        return self.root / "etc-ssh"

    @property
    def user_ssh(self) -> Path:
        """The deploy user's ~/.ssh as this host sees it (with ``own_home``)."""
        return self.root / "home-ssh"

    @property
    def known_name(self) -> str:
        return self.addr if self.port == 22 else f"[{self.addr}]:{self.port}"

    def known_line(self) -> str:
        return f"{self.known_name} {self.public_key}\n"

    def log(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def write(self, relative: str, text: str, mode: int = 0o644) -> None:
        path = self.etc / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(text)
        path.chmod(mode)


@dataclass
class Lab:
    """Starts and stops test hosts; every host it started is stopped by ``stop_all``."""

    base: Path
    hosts: list[Host] = field(default_factory=list)
    servers: list[socket.socket] = field(default_factory=list)
    old_sshd: Path | None = None  # the old sshd's wrapper: set by the `old_sshd` fixture

    def start(self, addr: str, config: str | None = None, port: int = 22,
              files: dict[str, str] | None = None, authorized: dict[str, str] | None = None,
              main_mode: int = 0o644, sudoers: str | None = None,
              own_home: bool = False, netns: bool = False, old: bool = False) -> Host:
        """``config`` defaults to HARDENED (HARDENED_OLD with ``old``).
        ``own_home``: the deploy user's ~/.ssh on this host is a directory of its own
        (bind-mounted in the host's namespace), so hosts do not share authorized_keys.
        ``netns``: the host has a network namespace of its own (only its sockets).
        ``old``: the host runs OpenSSH 8.4 (needs the ``old_sshd`` fixture)."""
        assert is_loopback(addr), addr
        assert not old or self.old_sshd is not None, "old=True needs the old_sshd fixture"
        if config is None:
            config = HARDENED_OLD if old else HARDENED
        host = Host(addr, port, self.base / f"{addr}-{port}", netns=netns,
                    sshd=self.old_sshd if old else None)
        host.etc.mkdir(parents=True)
        host.root.chmod(0o755)
        host.etc.chmod(0o755)
        host.public_key = " ".join(keygen(host.etc / "ssh_host_ed25519_key").split()[:2])
        host.write("sshd_config", BASE.format(addr=addr, port=port, piddir=host.root) + config,
                   main_mode)
        (host.etc / "sshd_config.d").mkdir(mode=0o755, exist_ok=True)
        for relative, text in (files or {}).items():
            host.write(relative, text)
        for user, line in (authorized or {}).items():
            host.write(f"authorized_keys/{user}", line + "\n")
        if sudoers is not None:  # this host's own /etc/sudoers.d, same namespace trick
            sudo_dir = host.root / "sudoers.d"
            sudo_dir.mkdir(mode=0o755)
            (sudo_dir / "kamal-secure-test").write_text(sudoers)
            (sudo_dir / "kamal-secure-test").chmod(0o440)
        if own_home:
            entry = pwd.getpwnam(DEPLOY_USER)
            for path in (Path(entry.pw_dir) / ".ssh", host.user_ssh):
                path.mkdir(mode=0o700, exist_ok=True)
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._spawn(host, own_home)
        self.hosts.append(host)
        return host

    def _spawn(self, host: Host, own_home: bool = False) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with (host.root / "sshd.log").open("wb") as log:
            host.process = subprocess.Popen(
                ["unshare", "-m", *(["-n"] if host.netns else []), "--", "/bin/sh", "-c",
                 (NETNS_UP if host.netns else "") + MOUNT_AND_RUN, str(host.etc),
                 str(host.root / "sudoers.d"),
                 str(host.user_ssh) if own_home else "",
                 str(Path(pwd.getpwnam(DEPLOY_USER).pw_dir) / ".ssh") if own_home else "",
                 str(host.sshd or "")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_listening(host)

    def silent(self, addr: str, port: int = 22) -> None:
        """A TCP server that accepts and never says a word."""
        assert is_loopback(addr), addr
        server = socket.create_server((addr, port))
        self.servers.append(server)
        held: list[socket.socket] = []

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                held.append(conn)

        threading.Thread(target=serve, daemon=True).start()

    def stop(self, host: Host) -> None:
        if host.process is not None and host.process.poll() is None:
            host.process.terminate()
            try:
                host.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait()

    def respawn(self, host: Host) -> None:
        """Start a stopped host again, with its files as they are."""
        self._spawn(host, host.user_ssh.exists())

    def stop_all(self) -> None:
        for host in self.hosts:
            self.stop(host)
        for server in self.servers:
            server.close()


def _wait_listening(host: Host) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert host.process is not None
        if host.process.poll() is not None:
            raise RuntimeError(f"sshd for {host.addr} exited: {host.log()}")
        if host.netns:  # not reachable from here: its own log says when it listens
            if "Server listening on" in host.log():
                return
            time.sleep(0.02)
            continue
        try:
            with socket.create_connection((host.addr, host.port), timeout=0.5) as sock:
                sock.recv(64)  # the banner: the daemon is ready
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"sshd for {host.addr}:{host.port} did not start: {host.log()}")


def can_run_sshd() -> str | None:
    """None when real test hosts can run here, else why not."""
    if not SSHD.exists():
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "real sshd test hosts need root (mount namespaces, useradd)"
    return None


def can_run_old_sshd() -> str | None:
    """None when OLD_SSHD runs (OpenSSH 8.4 for old=True hosts), else why not."""
    install = "scripts/install-old-sshd.sh installs it; `make test` runs it"
    if not OLD_SSHD:
        return f"KAMAL_SECURE_TEST_OLD_SSHD is empty: the old sshd was not installed ({install})"
    if not os.access(OLD_SSHD, os.X_OK):
        return f"the old sshd {OLD_SSHD} is not installed ({install})"
    done = subprocess.run([OLD_SSHD, "-V"], capture_output=True, text=True, check=False)
    if "OpenSSH_" not in done.stderr:  # 8.4 has no -V: its usage message names the version
        return f"the old sshd {OLD_SSHD} does not run: {done.stderr.strip()[:200]}"
    return None


def wait_sessions_done(host: Host, bound: float = 60) -> None:
    """Wait until no process but the host's sshd runs in its mount namespace (every remote
    command has ended, also one whose client died and whose session process is gone, and
    which init adopted). A bound, not a timing assertion."""
    assert host.process is not None
    mine = Path(f"/proc/{host.process.pid}/ns/mnt").readlink()
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        others = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == host.process.pid:
                continue
            try:
                if (entry / "ns" / "mnt").readlink() == mine:
                    others.append(entry.name)
            except OSError:
                continue
        if not others:
            return
        time.sleep(0.1)
    raise RuntimeError(f"processes still running on {host.addr} after {bound}s")
