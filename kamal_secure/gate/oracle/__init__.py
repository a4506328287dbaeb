"""Kamal as the oracle: run the real kamal with our Ruby guard preloaded.

The guard (``guard.rb``, shipped in this package) is loaded with
``RUBYOPT=-r<guard.rb>`` into the exact process kamal-secure execs (its pid is
bound), and asks a verdict process, forked from kamal-secure before the exec,
over an inherited socket (JSON lines) about what Kamal itself resolved. See
docs/kamal-oracle.md.

Whether the real kamal can be guarded is detected, never assumed: a script whose
``#!`` line runs ruby directly is Ruby; anything else (a shell wrapper, a Docker
wrapper, a binary) is probed by starting it with the guard in probe mode, which
answers and exits before Kamal loads. No answer, or an answer from another
process than the one started, means "not guardable": the gate then falls back to
kamal-secure's own model (:mod:`kamal_secure.gate.fallback`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GUARD = Path(__file__).resolve().with_name("guard.rb")
GUARD_ENV = "KAMAL_SECURE_GUARD"
PROBE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Kind:
    guardable: bool
    why: str


def guard_rubyopt(environ: dict[str, str]) -> str:
    own = f"-r{GUARD}"
    rest = [o for o in environ.get("RUBYOPT", "").split(" ") if o and o != own]
    return " ".join([own, *rest])


def _shebang(path: str) -> list[bytes]:
    try:
        with Path(os.path.realpath(path)).open("rb") as handle:
            head = handle.read(256)
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    return head[2:].split(b"\n", 1)[0].split()


def _runs_ruby_directly(words: list[bytes]) -> bool:
    if not words:
        return False
    if words[0].rsplit(b"/", 1)[-1] == b"env":
        words = [w for w in words[1:] if not w.startswith(b"-")]
        if not words:
            return False
    name = words[0].rsplit(b"/", 1)[-1]
    versioned = name.startswith(b"ruby") and name[4:].replace(b".", b"").isdigit()
    if not (name == b"ruby" or versioned):
        return False
    return not any(b"disable" in w or b"rubyopt" in w.lower() for w in words[1:])


def detect(path: str, environ: dict[str, str]) -> Kind:
    """Can the guard run inside this kamal? Read the #! line; otherwise probe it."""
    if not GUARD.is_file():
        return Kind(False, f"the guard {GUARD} is missing from this installation")
    if _runs_ruby_directly(_shebang(path)):
        return Kind(True, "a Ruby script")
    return _probe(path, environ)


def _probe(path: str, environ: dict[str, str]) -> Kind:
    read, write = os.pipe()
    # without RubyGems the probe answers in a fraction of the time; the guard is still loaded
    # by the same -r, at the same point, in the process the wrapper starts
    env = dict(environ, RUBYOPT=f"--disable-gems {guard_rubyopt(environ)}",
               **{GUARD_ENV: f"probe::{write}"})
    try:
        proc = subprocess.Popen([path, "version"], env=env, pass_fds=(write,),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError as err:
        os.close(read)
        os.close(write)
        return Kind(False, f"it could not be started ({err.strerror})")
    os.close(write)
    data = b""
    deadline = time.monotonic() + PROBE_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read)
        if proc.poll() is None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    try:
        answer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Kind(False, "it did not load the guard (not Ruby here, e.g. Docker-wrapped, "
                           "or it ignores RUBYOPT)")
    if not isinstance(answer, dict) or answer.get("pid") != proc.pid:
        return Kind(False, "it runs Ruby in a child process, where the guard cannot be bound")
    return Kind(True, "a wrapper that execs Ruby")


def run_resolved(args: list[str], env: dict[str, str] | None = None) -> int:
    """Every kamal command off the fast path: Kamal itself resolves it, under our guard.

    Where the real kamal cannot be guarded, say so and fall back to our own model,
    which refuses whatever it cannot resolve unambiguously. Imports nothing heavy:
    the verdict process, forked before the detection, loads the checks while the
    detection runs and Kamal boots."""
    from kamal_secure.gate.kamal import find_real_kamal

    environ = dict(os.environ if env is None else env)
    path = find_real_kamal(environ)
    verdict = start_verdict(args, environ)
    kind = detect(path, environ)
    if kind.guardable:
        exec_guarded(args, environ, path, verdict)
    verdict.close()  # the verdict process sees end of file and exits, having connected nowhere
    sys.stderr.write(f"kamal-secure: the real kamal ({path}) cannot be guarded: {kind.why}; "
                     "checking with kamal-secure's own model of Kamal instead, which refuses "
                     "what it cannot resolve unambiguously\n")
    from kamal_secure.gate.run import run_fallback

    return run_fallback(args, environ, path)


@dataclass
class VerdictProcess:
    """Our ends of a verdict process forked before the exec: the socket the guard inherits,
    and the write end of the pipe that lets it connect to hosts (only once the real kamal
    is known to be guardable and is about to be exec'd)."""

    theirs: socket.socket
    go: int

    def close(self) -> None:
        self.theirs.close()
        os.close(self.go)


def start_verdict(args: list[str], environ: dict[str, str]) -> VerdictProcess:
    """Fork the verdict process (double fork: init reaps it). It loads the checks at once;
    it connects to hosts only after :meth:`exec_guarded` said go, and ends at the end of
    file on its socket (the guard's end closed: kamal exited, or was never exec'd)."""
    ours, theirs = socket.socketpair()
    go_read, go_write = os.pipe()  # not inheritable: exec closes the write end
    served = {k: v for k, v in environ.items() if k != GUARD_ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked processes
        try:
            theirs.close()
            os.close(go_write)
            if os.fork() == 0:  # the grandchild serves; init reaps it
                code = 0
                try:
                    from kamal_secure.gate.oracle.verdict import serve

                    serve(ours, served, args, go_read)
                except BaseException:
                    code = 3
                finally:
                    sys.stderr.flush()
                    os._exit(code)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    ours.close()
    os.close(go_read)
    return VerdictProcess(theirs, go_write)


def exec_guarded(args: list[str], environ: dict[str, str], path: str,
                 verdict: VerdictProcess) -> None:
    """Tell ``verdict`` to go, then exec the real kamal with the guard. Never returns."""
    from kamal_secure.gate.kamal import exec_kamal

    theirs = verdict.theirs
    os.set_inheritable(theirs.fileno(), True)
    environ = dict(environ, RUBYOPT=guard_rubyopt(environ),
                   **{GUARD_ENV: f"v1:{os.getpid()}:{theirs.fileno()}"})
    with contextlib.suppress(OSError):  # the verdict process is gone: the guard stops kamal
        os.write(verdict.go, b"go")
    exec_kamal(args, environ, path)
