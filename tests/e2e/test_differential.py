"""Differential tier: argv spellings x config variants against the real Kamal and real sshd.

Two loopback hosts: H, hardened, and T, a trap (cloud-init's PasswordAuthentication yes),
both accepting the deploy key, both logging at DEBUG1 so each connection's client software
(paramiko = the gate's check, Ruby/Net::SSH = Kamal) is in the host's own log. For every
cell: every login Kamal made on a host was preceded, in that cell, by a login of the gate's
check on the same host with the same user and key; and Kamal never logged in on T.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Client, next_addr
from tests.e2e.test_real_kamal import BIN, KAMAL_HARDENED, TRAP, env_for, run
from tests.sshd_hosts import DEPLOY_USER, Host, Lab

pytestmark = [pytest.mark.e2e, pytest.mark.sshd]
DEBUG = KAMAL_HARDENED.replace("LogLevel VERBOSE", "LogLevel DEBUG1")

# {H}, {T}: the hardened and the trap host; {KEY}: the deploy key; {ROOT}: the app.
SSH = ('ssh:\n  user: kshdeploy\n  keys: ["{KEY}"]\n  keys_only: true\n'
       "  forward_agent: false\n  config: {CONFIG}\n")
HEAD = ("service: shop\nimage: acme/shop\naliases:\n  ship: ser exec whoami\n"
        "registry:\n  username: acme\n  password:\n    - KAMAL_REGISTRY_PASSWORD\n"
        "builder:\n  arch: amd64\n")
VARIANTS: dict[str, dict[str, str]] = {
    "plain": {"config/deploy.yml": HEAD + "servers:\n  web:\n    - {H}\n" + SSH},
    "destination": {
        "config/deploy.yml": HEAD + "servers:\n  web:\n    - {H}\n" + SSH,
        "config/deploy.trap.yml": "servers:\n  web:\n    - {T}\n",
    },
    "erb-comment": {"config/deploy.yml": HEAD + 'servers:\n  web:\n    - {H}\n'
                    '# <%= "\\n    - {T}" %>\n' + SSH},
    "merge-key": {"config/deploy.yml": HEAD + "servers:\n  job: &t\n    hosts: [{T}]\n"
                  "  web:\n    hosts: [{H}]\n    <<: *t\n" + SSH},
    "symbol-key": {"config/deploy.yml": HEAD + "servers:\n  web:\n    - {H}\n"
                   ":servers:\n  web:\n    - {T}\n" + SSH},
    "ssh-include": {
        "config/deploy.yml": HEAD + "servers:\n  web:\n    - web1\n"
        + SSH.replace("{CONFIG}", '"{ROOT}/.kamal/ssh_config"'),
        ".kamal/ssh_config": "Include {ROOT}/.kamal/included.conf\n",
        ".kamal/included.conf": "Host web1\n  HostName {T}\n",
    },
}
ARGV: list[list[str]] = [
    ["server", "exec", "whoami"],
    ["ser", "exec", "whoami"],
    ["server", "ex", "whoami"],
    ["server", "exec", "-d", "trap", "whoami"],
    ["server", "exec", "-dtrap", "whoami"],
    ["-d", "trap", "server", "exec", "whoami"],
    ["server", "exec", "-d", "", "whoami"],
    ["server", "exec", "whoami", "-d"],
    ["server", "exec", "-c5", "whoami"],
    ["server", "exec", "--no-destination", "whoami"],
    ["server", "exec", "--skip-roles", "whoami"],
    ["server", "exec", "-h", "127.55.*", "whoami"],
    ["server", "exec", "-r", "[!x]*", "whoami"],
    ["ship"],
    ["app", "bo"],
]
DESTINATION_ARGV = {3, 4, 5}  # meaningful only where deploy.trap.yml exists
CORE_ARGV = {0, 1, 11, 12, 13, 14}  # plain, prefix, -h/-r globs, alias, subcommand prefix


def cells() -> list[tuple[str, int]]:
    """The product, pruned to a few minutes on 2 cores: every spelling but the destination
    ones with the plain config; the destination ones (plus the empty/missing -d and the core
    spellings) with the destination config; the core spellings with every other config."""
    out = []
    for variant, index in itertools.product(VARIANTS, range(len(ARGV))):
        if variant == "plain":
            keep = index not in DESTINATION_ARGV
        elif variant == "destination":
            keep = index in DESTINATION_ARGV | CORE_ARGV | {6, 7}
        else:
            keep = index in CORE_ARGV
        if keep:
            out.append((variant, index))
    return out


CONNECTION = re.compile(r"Connection from \S+ port (\d+) on ")
SOFTWARE = re.compile(r"remote software version (\S+)")
ACCEPTED = re.compile(r"Accepted publickey for (\S+) from \S+ port (\d+) ssh2: (\S+) (\S+)")


@dataclass(frozen=True)
class Login:
    client: str  # "gate" or "kamal"
    user: str
    key: str


def logins(text: str) -> list[Login]:
    """Each accepted login in order, with the client software that made it."""
    software: dict[str, str] = {}
    pending: str | None = None
    out = []
    for line in text.splitlines():
        if (m := CONNECTION.search(line)) is not None:
            pending = m.group(1)
        elif (m := SOFTWARE.search(line)) is not None and pending is not None:
            software[pending] = m.group(1)
            pending = None
        elif (m := ACCEPTED.search(line)) is not None:
            client = software.get(m.group(2), "?")
            kind = "kamal" if "Net::SSH" in client else "gate" if "paramiko" in client else client
            out.append(Login(kind, m.group(1), m.group(4)))
    return out


def write_variant(root: Path, files: dict[str, str], values: dict[str, str]) -> None:
    for name, text in files.items():
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{CONFIG}", "false"))
    (root / ".kamal").mkdir(exist_ok=True)
    (root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD\n")
    git = ["git", "-c", "user.email=e2e@example.com", "-c", "user.name=e2e"]
    subprocess.run([*git, "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "init"], check=True)


def test_differential_matrix(lab: Lab, client: Client, tmp_path: Path, real_kamal: Path) -> None:
    hardened = lab.start(next_addr(), DEBUG, authorized={DEPLOY_USER: client.public})
    trap = lab.start(next_addr(), DEBUG, files=TRAP, authorized={DEPLOY_USER: client.public})
    client.trust(hardened.known_line(), trap.known_line())
    env = env_for(real_kamal, HOME=str(client.home), KAMAL_SECURE_FAIL_ON="critical")
    env.pop("SSH_AUTH_SOCK", None)
    apps = {}
    for variant, files in VARIANTS.items():
        root = tmp_path / variant
        write_variant(root, files, {"H": hardened.addr, "T": trap.addr, "KEY": str(client.key),
                                    "ROOT": str(root)})
        apps[variant] = root
    matrix = cells()
    violations: list[str] = []
    kamal_reached_h = gate_refused_t = 0
    for variant, index in matrix:
        argv = ARGV[index]
        before = {h.addr: len(h.log()) for h in (hardened, trap)}
        result = run([f"{BIN}/kamal-secure", *argv], apps[variant], env)
        cell = f"{variant} x kamal-secure {' '.join(argv)!s} (exit {result.returncode})"
        for host in (hardened, trap):
            seen = logins(host.log()[before[host.addr]:])
            violations.extend(_check(cell, host, seen, host is trap))
            kamal = [s for s in seen if s.client == "kamal"]
            if host is hardened and kamal:
                kamal_reached_h += 1
            if host is trap and not kamal and any(s.client == "gate" for s in seen):
                gate_refused_t += 1
        assert "Traceback" not in result.stderr, cell + result.stderr
    print(f"differential matrix: {len(matrix)} cells ({len(VARIANTS)} configs x "
          f"{len(ARGV)} argv spellings, pruned); Kamal reached H in {kamal_reached_h}, "
          f"the gate checked and stopped T in {gate_refused_t}")
    assert not violations, "\n".join(violations)
    assert kamal_reached_h > 0  # the matrix exercises real Kamal connections
    assert gate_refused_t > 0  # and real refusals of the trap
    # control: the same detector on plain kamal (no gate) sees it reach the trap
    offset = len(trap.log())
    run([str(real_kamal), "server", "exec", "whoami"], apps["erb-comment"], env)
    control = _check("control", trap, logins(trap.log()[offset:]), True)
    assert any("logged in on the trap" in v for v in control), control


def _check(cell: str, host: Host, seen: list[Login], is_trap: bool) -> list[str]:
    out = []
    checked: set[tuple[str, str]] = set()
    for login in seen:
        if login.client == "gate":
            checked.add((login.user, login.key))
        elif login.client == "kamal":
            if is_trap:
                out.append(f"{cell}: Kamal logged in on the trap {host.addr}")
            if (login.user, login.key) not in checked:
                out.append(f"{cell}: Kamal logged in on {host.addr} as {login.user} with "
                           f"{login.key}, which the gate did not check")
        else:
            out.append(f"{cell}: a login on {host.addr} by unknown client {login.client}")
    return out


def test_gated_deploy_reaches_docker(lab: Lab, client: Client, tmp_path: Path,
                                     real_kamal: Path) -> None:
    """`kamal-secure deploy` on a hardened host goes through the guard up to Docker."""
    hardened = lab.start(next_addr(), KAMAL_HARDENED, authorized={DEPLOY_USER: client.public})
    client.trust(hardened.known_line())
    root = tmp_path / "app"
    write_variant(root, VARIANTS["plain"], {"H": hardened.addr, "T": hardened.addr,
                                            "KEY": str(client.key), "ROOT": str(root)})
    env = env_for(real_kamal, HOME=str(client.home), KAMAL_SECURE_FAIL_ON="critical")
    env.pop("SSH_AUTH_SOCK", None)
    result = run([f"{BIN}/kamal-secure", "deploy"], root, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # this machine has no Docker
    assert "kamal-secure: guard:" not in output
    assert "refused" not in output
    assert "docker" in output.lower()  # Kamal's own body ran and needed Docker
