"""Differential tier: argv spellings x config variants against the real Kamal and real sshd.

Two loopback hosts: H, hardened, and T, a trap (cloud-init's PasswordAuthentication yes),
both accepting the deploy key, both logging at DEBUG1 so each connection's client software
(paramiko = the gate's check, Ruby/Net::SSH = Kamal) is in the host's own log. For every
cell: every login Kamal made on a host was preceded, in that cell, by a login of the gate's
check on the same host with the same user and key; and Kamal never logged in on T.
Two tiers share the matrix and the detector: `kamal-secure` (the guarded gate), and plain
`kamal` with `kamal-secure hooks install` (the check is then our pre-connect hook's).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from testing.e2e import BIN, KAMAL_HARDENED, TRAP, commit_all, env_for, run
from testing.sshd import DEPLOY_USER, Client, Host, Lab, next_addr

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
    commit_all(root)


def _lab(lab: Lab, client: Client) -> tuple[Host, Host]:
    """The hardened host H and the trap T, both pinned, both accepting the deploy key."""
    hardened = lab.start(next_addr(), DEBUG, authorized={DEPLOY_USER: client.public})
    trap = lab.start(next_addr(), DEBUG, files=TRAP, authorized={DEPLOY_USER: client.public})
    client.trust(hardened.known_line(), trap.known_line())
    return hardened, trap


def _apps(root: Path, client: Client, hardened: Host, trap: Host) -> dict[str, Path]:
    apps = {}
    for variant, files in VARIANTS.items():
        app = root / variant
        write_variant(app, files, {"H": hardened.addr, "T": trap.addr, "KEY": str(client.key),
                                   "ROOT": str(app)})
        apps[variant] = app
    return apps


@dataclass
class Outcome:
    violations: list[str]
    cells: list[str]  # one line per cell: the exit and who logged in where
    reached_h: int = 0  # cells where Kamal logged in on H
    refused_t: int = 0  # cells where T was checked (paramiko) and Kamal never logged in there


def run_matrix(command: list[str], matrix: list[tuple[str, int]], apps: dict[str, Path],
               env: dict[str, str], hardened: Host, trap: Host) -> Outcome:
    """Run `command + argv` for every cell and check both hosts' logs of that cell."""
    outcome = Outcome([], [])
    for variant, index in matrix:
        argv = ARGV[index]
        before = {h.addr: len(h.log()) for h in (hardened, trap)}
        result = run([*command, *argv], apps[variant], env)
        cell = (f"{variant} x {Path(command[0]).name} {' '.join(argv)!s} "
                f"(exit {result.returncode})")
        for host in (hardened, trap):
            seen = logins(host.log()[before[host.addr]:])
            outcome.violations.extend(_check(cell, host, seen, host is trap))
            kamal = [s for s in seen if s.client == "kamal"]
            if host is hardened and kamal:
                outcome.reached_h += 1
            if host is trap and not kamal and any(s.client == "gate" for s in seen):
                outcome.refused_t += 1
        outcome.cells.append(cell + " " + ", ".join(
            f"{name}: {sorted({s.client for s in logins(host.log()[before[host.addr]:])})}"
            for name, host in (("H", hardened), ("T", trap)))
            + " | " + (result.stdout + result.stderr).strip().rsplit("\n", 1)[-1][:120])
        assert "Traceback" not in result.stdout + result.stderr, cell + result.stderr
        assert "reg-e2e-Vq7Lm2Xz9Tn4" not in result.stdout + result.stderr, cell
    return outcome


def _env(real_kamal: Path, client: Client) -> dict[str, str]:
    env = env_for(real_kamal, HOME=str(client.home), KAMAL_SECURE_FAIL_ON="critical")
    env.pop("SSH_AUTH_SOCK", None)
    return env


def test_differential_matrix(lab: Lab, client: Client, tmp_path: Path, real_kamal: Path) -> None:
    hardened, trap = _lab(lab, client)
    env = _env(real_kamal, client)
    apps = _apps(tmp_path, client, hardened, trap)
    matrix = cells()
    outcome = run_matrix([f"{BIN}/kamal-secure"], matrix, apps, env, hardened, trap)
    print(f"differential matrix: {len(matrix)} cells ({len(VARIANTS)} configs x "
          f"{len(ARGV)} argv spellings, pruned); Kamal reached H in {outcome.reached_h}, "
          f"the gate checked and stopped T in {outcome.refused_t}")
    assert not outcome.violations, "\n".join(outcome.violations)
    assert outcome.reached_h > 0  # the matrix exercises real Kamal connections
    assert outcome.refused_t > 0  # and real refusals of the trap
    # control: the same detector on plain kamal (no gate) sees it reach the trap
    offset = len(trap.log())
    run([str(real_kamal), "server", "exec", "whoami"], apps["erb-comment"], env)
    control = _check("control", trap, logins(trap.log()[offset:]), True)
    assert any("logged in on the trap" in v for v in control), control


# Plain kamal with our hooks: every spelling with the plain config but the destination
# ones, which run with the destination config (with the empty and missing -d, the prefix and
# the alias); the prefixes, the alias and the -h glob with every config whose hosts differ
# from a naive reading (ERB in a comment, merge key, symbol key, ssh_config Include).
HOOK_CORE = {0, 1, 11, 13, 14}
HOOK_VARIANTS = {"plain": set(range(len(ARGV))) - DESTINATION_ARGV,
                 "destination": DESTINATION_ARGV | {0, 1, 6, 7, 13},
                 "erb-comment": HOOK_CORE, "merge-key": HOOK_CORE, "symbol-key": HOOK_CORE,
                 "ssh-include": HOOK_CORE}


def hook_cells() -> list[tuple[str, int]]:
    return [(variant, index) for variant, keep in HOOK_VARIANTS.items()
            for index in sorted(keep)]


def test_differential_matrix_plain_kamal_with_hooks(lab: Lab, client: Client, tmp_path: Path,
                                                    real_kamal: Path) -> None:
    """Issue 11, proof: the same detector on plain `kamal` with `kamal-secure hooks install`.
    Kamal runs pre-connect before its first connection, so after a refusal it logs in nowhere."""
    hardened, trap = _lab(lab, client)
    env = _env(real_kamal, client)
    apps = _apps(tmp_path, client, hardened, trap)
    for app in apps.values():
        installed = run([f"{BIN}/kamal-secure", "hooks", "install"], app, env)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    matrix = hook_cells()
    outcome = run_matrix([str(real_kamal)], matrix, apps, env, hardened, trap)
    print("\n".join(outcome.cells))
    print(f"hooks differential matrix: {len(matrix)} cells; Kamal reached H in "
          f"{outcome.reached_h}, the hook checked and stopped T in {outcome.refused_t}")
    assert not outcome.violations, "\n".join(outcome.violations)
    assert outcome.reached_h > 0
    assert outcome.refused_t > 0


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
