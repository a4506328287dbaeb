"""One verified SSH connection per host, opened the way Kamal opens it.

TCP (direct, through ``ssh.proxy`` as a jump host, or ``ssh.proxy_command``),
then the host key is verified strictly before anything else is sent, then the
unauthenticated probe (``auth_none``) on the same connection, then a public-key
login as ``ssh.user`` with ``ssh.keys`` (plus agent and default keys unless
``keys_only``). Remote commands are argv lists joined with ``shlex.join``: no
config value ever reaches a remote shell unquoted.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import select
import shlex
import socket
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from kamal_secure.config.inventory import Jump, SshSettings
from kamal_secure.errors import CheckIncomplete
from kamal_secure.facts.host import Unchecked
from kamal_secure.remote import hostkeys
from kamal_secure.remote.authorized import blob_fingerprint
from kamal_secure.remote.probe import probe_methods
from kamal_secure.remote.ssh_config import resolve

logging.getLogger("paramiko").addHandler(logging.NullHandler())
MAX_OUTPUT = 1024 * 1024
TOKENS = re.compile(r"%[hpr%]")
JUMP_STARTUPS = 8  # below sshd's default MaxStartups 10
BANNER_TIMEOUT = 8.0  # seconds for the first bytes of SSH; sshd sends them at once
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
# Test-only fault injection: the process dies (exit 98) after the Nth remote command that
# has input was started and before its input is sent: a dropped connection, as the host
# sees it.
DROP_ENV = "KAMAL_SECURE_TEST_DROP_STDIN"
_with_input = itertools.count(1)


class Unreachable(CheckIncomplete):
    reason: Unchecked = "unreachable"


class LoginFailed(CheckIncomplete):
    reason: Unchecked = "login_failed"


@dataclass(frozen=True)
class Endpoint:
    hostname: str  # after ssh config HostName
    port: int
    user: str


@dataclass
class Session:
    endpoint: Endpoint
    transport: paramiko.Transport
    host_key: paramiko.PKey
    offered: tuple[str, ...] | None
    timeout: float
    jump: paramiko.Transport | None = None
    execs: int = field(default=0)

    def run(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
        """Run argv (quoted, never interpolated) on the host; stdout+stderr, exit status."""
        channel = self.transport.open_session(timeout=self.timeout)
        try:
            channel.settimeout(self.timeout)
            channel.set_combine_stderr(True)
            channel.exec_command(shlex.join(argv))
            self.execs += 1
            if stdin:
                if os.environ.get(DROP_ENV) == str(next(_with_input)):
                    os._exit(98)
                channel.sendall(stdin)
            channel.shutdown_write()
            data = _read_all(channel)
            return channel.recv_exit_status(), data.decode("utf-8", "replace")
        finally:
            channel.close()

    def close(self) -> None:
        self.transport.close()
        if self.jump is not None:
            self.jump.close()


def _read_all(channel: paramiko.Channel) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = channel.recv(65536)
        except TimeoutError:
            raise Unreachable("the host stopped answering while a command ran") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size <= MAX_OUTPUT:
            chunks.append(chunk)


@dataclass
class Connector:
    """Everything needed to open sessions: settings, trusted keys, login keys."""

    ssh: SshSettings
    known: hostkeys.KnownHosts
    keys: list[paramiko.PKey]
    timeout: float
    # ssh.proxy_command runs a local command taken from deploy.yml: only when the caller
    # says Kamal is about to run it anyway (gate, hooks, fix commands) or the user allowed
    # it for `scan` (--allow-proxy-command, hosts.allow_proxy_command in the policy).
    allow_proxy_command: bool = False
    opened: list[paramiko.Transport] = field(default_factory=list)  # closed on abort
    _jump_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(JUMP_STARTUPS))
    _agent_lock: threading.Lock = field(default_factory=threading.Lock)

    def open_host(self, name: str) -> Session:
        """The one way a host named in deploy.yml is opened: where Kamal connects for it
        (:func:`endpoint_for`), its host key verified strictly, then logged in."""
        endpoint, names = endpoint_for(name, self.ssh)
        return self.open(endpoint, names)

    def open(self, endpoint: Endpoint, names: list[str]) -> Session:
        sock, jump = self.reach(endpoint)
        transport, key, offered = _closing_on_failure(
            jump, lambda: self._handshake(sock, endpoint, names))
        return Session(endpoint, transport, key, offered, self.timeout, jump)

    def reach(self, endpoint: Endpoint) -> tuple[Any, paramiko.Transport | None]:
        """A byte stream to the host, the way Kamal reaches it (directly, through the
        ``ssh.proxy`` jump host, whose own key is verified strictly, or ``proxy_command``),
        and the jump host's connection (the caller closes it), if any. No SSH yet."""
        jump = self.jump(self.ssh.proxy) if self.ssh.proxy is not None else None
        return _closing_on_failure(jump, lambda: self.open_socket(endpoint, jump)), jump

    def jump(self, proxy: Jump) -> paramiko.Transport:
        """A verified connection to the jump host for one target. At most JUMP_STARTUPS
        are being set up at once: a bastion's MaxStartups (10:30:100) drops the rest.
        (One connection shared by all targets raced in paramiko's channel teardown.)"""
        end = Endpoint(proxy.host, proxy.port, proxy.user)
        with self._jump_slots:
            sock = self._tcp(end)
            transport, _, _ = self._handshake(sock, end, [hostkeys.key_name(end.hostname,
                                                                             end.port)])
        return transport

    def open_socket(self, endpoint: Endpoint, jump: paramiko.Transport | None) -> Any:
        if jump is not None:
            try:
                return jump.open_channel("direct-tcpip", (endpoint.hostname, endpoint.port),
                                         ("127.0.0.1", 0), timeout=self.timeout)
            except (paramiko.SSHException, OSError) as err:
                raise Unreachable(f"jump host could not reach {endpoint.hostname}:"
                                  f"{endpoint.port}: {err}") from None
        if self.ssh.proxy_command:
            if not self.allow_proxy_command:
                raise Unreachable(
                    "ssh.proxy_command was not run: it is a local command from the scanned "
                    "repository", hint="pass --allow-proxy-command to `kamal-secure scan` "
                    "(or set hosts.allow_proxy_command: true in the policy) to run it")
            return paramiko.ProxyCommand(proxy_command_line(self.ssh.proxy_command, endpoint))
        return self._tcp(endpoint)

    def _tcp(self, endpoint: Endpoint) -> socket.socket:
        try:
            sock = socket.create_connection((endpoint.hostname, endpoint.port), self.timeout)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise Unreachable(f"cannot connect to {endpoint.hostname}:{endpoint.port}: "
                              f"{reason}") from None
        # SSH sends many small packets that each wait for an answer: without this,
        # Nagle's algorithm and delayed ACKs add ~40 ms to every round trip.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _await_banner(self, sock: Any, endpoint: Endpoint) -> float:
        """Fail fast, and say why, when something accepts TCP but never speaks SSH."""
        seconds = min(self.timeout, BANNER_TIMEOUT)
        if isinstance(sock, socket.socket):
            ready, _, _ = select.select([sock], [], [], seconds)
            if not ready:
                sock.close()
                raise Unreachable(f"no SSH banner from {endpoint.hostname}:{endpoint.port} "
                                  f"within {seconds:g} s (it accepts TCP but does not speak "
                                  "SSH: a wrong port, a firewall or a hung sshd)")
        return seconds

    def _handshake(self, sock: Any, endpoint: Endpoint, names: list[str]
                   ) -> tuple[paramiko.Transport, paramiko.PKey, tuple[str, ...] | None]:
        banner = self._await_banner(sock, endpoint)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = banner
        self.opened.append(transport)
        try:
            return self._verified_login(transport, endpoint, names)
        except BaseException:
            transport.close()
            raise

    def _verified_login(self, transport: paramiko.Transport, endpoint: Endpoint,
                        names: list[str]
                        ) -> tuple[paramiko.Transport, paramiko.PKey, tuple[str, ...] | None]:
        known = hostkeys.known_for(self.known, names)
        hostkeys.prefer_known_types(transport, known)
        transport.auth_timeout = transport.handshake_timeout = self.timeout
        try:
            transport.start_client(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as err:
            if "protocol banner" in str(err):
                raise Unreachable(f"no SSH banner from {endpoint.hostname}:{endpoint.port} "
                                  f"within {transport.banner_timeout:g} s") from None
            raise Unreachable(f"{endpoint.hostname}:{endpoint.port} did not complete the SSH "
                              f"handshake: {err or type(err).__name__}") from None
        key = transport.get_remote_server_key()
        hostkeys.verify(known, names, key, self.known.revoked)
        offered = probe_methods(transport, endpoint.user)
        if not transport.is_authenticated():  # "none" let us in: KS703 reports it
            self._login(transport, endpoint)
        return transport, key, offered

    def _login(self, transport: paramiko.Transport, endpoint: Endpoint) -> None:
        for key in self.keys:
            # One agent connection is shared by every thread: one signature at a time.
            lock = self._agent_lock if isinstance(key, paramiko.AgentKey) else nullcontext()
            try:
                with lock:
                    transport.auth_publickey(endpoint.user, key)
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, OSError) as err:
                raise Unreachable(f"connection lost during login: {err}") from None
            if transport.is_authenticated():
                return
        if not self.keys:
            raise LoginFailed(f"{endpoint.user}@{endpoint.hostname}: no usable key (ssh.keys "
                              "missing, or passphrase-protected and not in the agent)")
        raise LoginFailed(f"{endpoint.user}@{endpoint.hostname}: none of "
                          f"{len(self.keys)} key(s) was accepted")


T = TypeVar("T")


def _closing_on_failure(jump: paramiko.Transport | None, step: Callable[[], T]) -> T:
    """``step()``; when it fails, the jump host's connection is closed before the error
    goes on (nobody else holds it yet)."""
    try:
        return step()
    except BaseException:
        if jump is not None:
            jump.close()
        raise


def endpoint_for(name: str, ssh: SshSettings) -> tuple[Endpoint, list[str]]:
    """Where Kamal connects for the deploy.yml host ``name`` (ssh config HostName,
    ``ssh.port``, ``ssh.user``) and the known_hosts names its key is looked up under: the
    address first (the name pin-hosts writes), then the name as deploy.yml spells it."""
    hostname, port = resolve(name, ssh)
    names = [hostkeys.key_name(hostname, port)]
    if name != hostname:
        names.append(hostkeys.key_name(name, port))
    return Endpoint(hostname, port, ssh.user), names


def proxy_command_line(template: str, endpoint: Endpoint) -> str:
    """``%h``/``%p``/``%r`` substituted inside each word, then re-quoted word by word."""
    values = {"%h": endpoint.hostname, "%p": str(endpoint.port), "%r": endpoint.user,
              "%%": "%"}
    words = [TOKENS.sub(lambda m: values[m.group()], word) for word in shlex.split(template)]
    return shlex.join(words)  # one pass: a value containing %p is not substituted again


def load_login_keys(ssh: SshSettings) -> list[paramiko.PKey]:
    """ssh.keys first (unencrypted files, or the agent's copy), then agent and defaults."""
    keys: list[paramiko.PKey] = []
    agent = [] if ssh.keys_only and not ssh.keys else agent_keys()
    for path in ssh.keys:
        keys.extend(key_file(Path(path).expanduser(), agent))
    if not ssh.keys_only:
        keys.extend(k for k in agent if k not in keys)
        for path in DEFAULT_KEYS:
            if Path(path).expanduser().is_file() and path not in ssh.keys:
                keys.extend(key_file(Path(path).expanduser(), []))
    return keys


def key_file(path: Path, agent: list[paramiko.PKey]) -> list[paramiko.PKey]:
    try:
        return [paramiko.PKey.from_path(path)]
    except paramiko.PasswordRequiredException:
        public = public_fingerprint(path)
        return [k for k in agent if public is not None and k.fingerprint == public]
    except (OSError, paramiko.SSHException, ValueError):
        return []


def public_fingerprint(path: Path) -> str | None:
    pub = path.with_name(path.name + ".pub")
    try:
        blob = pub.read_text().split()[1]
    except (OSError, ValueError, IndexError):
        try:
            return str(paramiko.PKey.from_path(path).fingerprint)
        except (OSError, paramiko.SSHException, ValueError):
            return None
    return blob_fingerprint(blob)


def agent_keys() -> list[paramiko.PKey]:
    try:
        return list(paramiko.Agent().get_keys())
    except paramiko.SSHException:
        return []
