"""Local code execution (issue 13): what kamal-secure starts or connects to, and when.

Every call site that can start a process or open a connection is listed in
docs/local-execution.md (checked both ways against the source), and a planted
project proves that `scan --offline` runs none of its commands and opens no
connection, that `Match exec` is never run, and that online `scan` runs
`ssh.proxy_command` only when allowed."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

from testing.cli import REPO, run_cli
from testing.sshd import next_addr

PACKAGE = REPO / "kamal_secure"
DOC = REPO / "docs" / "local-execution.md"
# Calls that start a process or open a connection (module attribute or name).
STARTERS = {
    "subprocess": {"run", "Popen", "call", "check_call", "check_output", "getoutput",
                   "getstatusoutput"},
    "os": {"system", "popen", "fork", "forkpty", "spawnv", "spawnve", "spawnvp", "spawnvpe",
           "spawnl", "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp",
           "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe"},
    "socket": {"socket", "create_connection", "socketpair", "fromfd"},
    "paramiko": {"ProxyCommand", "Agent", "Transport", "SSHClient", "SSHConfig"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell", "open_connection"},
    "pty": {"spawn", "fork"},
}


def _call_sites() -> set[str]:
    sites: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(PACKAGE).as_posix()
        for scope in ast.walk(tree):
            if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            owner = _owner(tree, scope)
            name = f"{owner}.{scope.name}" if owner else scope.name
            for node in ast.walk(scope):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name)
                        and node.func.attr in STARTERS.get(node.func.value.id, ())):
                    sites.add(f"{rel}:{name}")
    return sites


def _owner(tree: ast.Module, func: ast.AST) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and func in node.body:
            return node.name
    return None


def _documented() -> set[str]:
    return set(re.findall(r"^\| `([\w/]+\.py:[\w.]+)` \|", DOC.read_text(), re.MULTILINE))


def test_every_process_and_connection_is_documented() -> None:
    sites = _call_sites()
    assert "remote/session.py:Connector.open_socket" in sites  # the scan sees nested calls
    listed = _documented()
    assert sites - listed == set(), "not in docs/local-execution.md"
    assert listed - sites == set(), "listed in docs/local-execution.md but gone from the code"


def _planted(root: Path, host: str) -> dict[str, Path]:
    """A project whose every executable corner writes a marker file when run."""
    markers = {name: root / f"RAN_{name}" for name in
               ("match_exec", "proxy_command", "erb", "hook", "secrets", "include_exec",
                "shellcheck")}
    (root / "config").mkdir(parents=True)
    (root / ".kamal" / "hooks").mkdir(parents=True)
    (root / "ssh").mkdir()
    (root / "ssh" / "more.conf").write_text(
        f'Match exec "touch {markers["include_exec"]}"\n  HostName 127.0.0.1\n')
    (root / "ssh" / "config").write_text(
        f'Include more.conf\nMatch exec "touch {markers["match_exec"]}"\n'
        "  HostName 127.0.0.1\n")
    (root / "config" / "deploy.yml").write_text(
        "service: shop\nimage: acme/shop\n"
        f"servers:\n  - {host}\n"
        f"registry:\n  username: <%= `touch {markers['erb']}` %>\n"
        "  password: [KAMAL_REGISTRY_PASSWORD]\n"
        "ssh:\n  user: deploy\n  config: ssh/config\n  keys_only: true\n"
        f"  proxy_command: \"touch {markers['proxy_command']}\"\n")
    hook = root / ".kamal" / "hooks" / "pre-deploy"
    hook.write_text(f"#!/bin/sh\ntouch {markers['hook']}\n")
    hook.chmod(0o755)
    (root / ".kamal" / "secrets").write_text(
        f"KAMAL_REGISTRY_PASSWORD=$(touch {markers['secrets']})\n")
    fake = root / "bin"  # a "shellcheck" in the project, found through a relative PATH entry
    fake.mkdir()
    (fake / "shellcheck").write_text(f"#!/bin/sh\ntouch {markers['shellcheck']}\n")
    (fake / "shellcheck").chmod(0o755)
    return markers


AUDITED = r"""
import json, sys
events = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                 "os.fork", "os.forkpty", "pty.spawn"):
        events.append([event, str(args[0])[:200], [str(a)[:200] for a in (args[1] or [])]
                       if event == "subprocess.Popen" and len(args) > 1 else []])
    elif event == "socket.connect":
        events.append([event, str(args[1])[:200], []])
sys.addaudithook(hook)
from kamal_secure.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
sys.stderr.write("\nEVENTS " + json.dumps(events) + "\n")
sys.exit(code)
"""


def _scan(root: Path, *args: str) -> tuple[int, str, list[list[object]]]:
    out = run_cli(["scan", *args], root,
                  {"PATH": f"bin:{os.environ.get('PATH', '')}", "HOME": str(root / "home")},
                  timeout=300, program=[sys.executable, "-c", AUDITED])
    events = json.loads(out.stderr.rsplit("EVENTS ", 1)[1])
    return out.code, out.stdout + out.stderr, events


def test_offline_scan_runs_nothing_from_the_repository(tmp_path: Path) -> None:
    markers = _planted(tmp_path, "203.0.113.7")
    code, output, events = _scan(tmp_path, "--offline", "--format", "json")
    assert code in (0, 1), output
    assert [m.name for m in markers.values() if m.exists()] == []
    assert [e for e in events if e[0] == "socket.connect"] == []
    started = [e for e in events if e[0] != "socket.connect"]
    # at most the system's ShellCheck, by absolute path, never the project's own
    assert all(e[0] == "subprocess.Popen" and Path(str(e[1])).is_absolute()
               and not Path(str(e[1])).resolve().is_relative_to(tmp_path.resolve())
               and Path(str(e[1])).name == "shellcheck" for e in started), started


def test_online_scan_never_runs_match_exec_nor_an_unallowed_proxy_command(
        tmp_path: Path) -> None:
    """Nothing listens on the loopback address: the scan tries, fails, reports exit 3."""
    addr = next_addr()
    markers = _planted(tmp_path, addr)
    code, output, events = _scan(tmp_path, "--format", "json")
    assert code == 3, output
    assert [m.name for m in markers.values() if m.exists()] == []
    assert "--allow-proxy-command" in output
    assert [e for e in events if e[0] == "subprocess.Popen"
            and "touch" in json.dumps(e)] == []


def test_allowed_proxy_command_runs_but_match_exec_still_does_not(tmp_path: Path) -> None:
    addr = next_addr()
    markers = _planted(tmp_path, addr)
    code, output, _ = _scan(tmp_path, "--format", "json", "--allow-proxy-command")
    assert code == 3, output  # nc reaches nothing: still not checked
    ran = {name for name, marker in markers.items() if marker.exists()}
    assert ran == {"proxy_command"}, output
