"""The whole gate through the real Kamal against plain Kamal, side by side (a ratio, not a test).

`kamal-secure server exec whoami` (the Ruby guard in Kamal, the verdict process, the static
rules on Kamal's resolved config and the live check of the host) against plain
`kamal server exec whoami` on the same hardened loopback host, runs interleaved so that
machine noise hits both alike; the figure is the ratio of medians. Goal: <= 1.5.

Python runs with its bytecode cache, as installed by pip (which compiles it): the warm-up
run writes it under the benchmark's temporary directory (PYTHONPYCACHEPREFIX), also where
PYTHONDONTWRITEBYTECODE is set. BENCH_BYTECODE=0 measures without it (every run compiles
kamal-secure and its dependencies from source, about 1 s more).

Needs the real Kamal (KAMAL_E2E_BIN, or .e2e/kamal/bin/kamal from
scripts/install-kamal.sh), root and /usr/sbin/sshd; connects only to 127.55.202.2.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from testing.sshd import (  # noqa: E402
    DEPLOY_USER,
    HARDENED,
    Lab,
    can_run_sshd,
    ensure_user,
    keygen,
    remove_user,
)

REPS = int(os.environ.get("BENCH_REPS", "7"))
ADDR = "127.55.202.2"
# Debian's Kamal has no curve25519: keep an ECDH kex (see tests/e2e/test_real_kamal.py)
KAMAL_HARDENED = HARDENED.replace("curve25519-sha256,", "ecdh-sha2-nistp256,curve25519-sha256,", 1)


def real_kamal() -> Path | None:
    value = os.environ.get("KAMAL_E2E_BIN") or str(REPO / ".e2e" / "kamal" / "bin" / "kamal")
    path = Path(value)
    return path if path.is_file() else None


def project(root: Path, key: Path) -> Path:
    (root / "config").mkdir(parents=True)
    (root / ".kamal").mkdir()
    (root / "config" / "deploy.yml").write_text(
        f"service: bench\nimage: acme/bench\nservers:\n  - {ADDR}\n"
        "registry:\n  username: [KAMAL_REGISTRY_USERNAME]\n  password:\n"
        "    - KAMAL_REGISTRY_PASSWORD\nbuilder:\n  arch: amd64\n"
        f"ssh:\n  user: {DEPLOY_USER}\n  keys: [\"{key}\"]\n  keys_only: true\n"
        "  forward_agent: false\n  config: false\n")
    (root / ".kamal" / "secrets").write_text(
        "KAMAL_REGISTRY_USERNAME=$KAMAL_REGISTRY_USERNAME\n"
        "KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD\n")
    git = ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "init"], check=True)
    return root


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or DEPLOY_USER not in done.stdout:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                         f"{done.stdout[-800:]}{done.stderr[-800:]}")
    return elapsed


def measure(base: Path, kamal: Path) -> None:
    home = base / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "kamal_deploy_key"
    public = keygen(key)
    (base / "hosts").mkdir(mode=0o755)
    base.chmod(0o755)
    lab = Lab(base / "hosts")
    try:
        host = lab.start(ADDR, KAMAL_HARDENED, authorized={DEPLOY_USER: public})
        (home / ".ssh" / "known_hosts").write_text(host.known_line())
        app = project(base / "app", key)
        ours = str(Path(sys.executable).with_name("kamal-secure"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMAL_SECURE")}
        env.pop("SSH_AUTH_SOCK", None)
        bytecode = os.environ.get("BENCH_BYTECODE", "1") != "0"
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        env.update(HOME=str(home), NO_COLOR="1", KAMAL_SECURE_KAMAL=str(kamal),
                   KAMAL_SECURE_FAIL_ON="critical", KAMAL_REGISTRY_USERNAME="bench",
                   KAMAL_REGISTRY_PASSWORD="bench-Vq7Lm2Xz9Tn4")
        gated: list[float] = []
        plain: list[float] = []
        timed([ours, "server", "exec", "whoami"], app, env)  # warm caches for both sides
        for _ in range(REPS):
            gated.append(timed([ours, "server", "exec", "whoami"], app, env))
            plain.append(timed([str(kamal), "server", "exec", "whoami"], app, env))
        mg, mp = statistics.median(gated), statistics.median(plain)
        print(f"kamal-secure server exec whoami (guard, checks, real Kamal): median "
              f"{mg * 1000:.0f} ms over {REPS} runs")
        print(f"plain kamal server exec whoami:                             median "
              f"{mp * 1000:.0f} ms over {REPS} runs")
        print(f"ratio gated / plain: {mg / mp:.2f}  (goal <= 1.5; Python "
              f"{'with' if bytecode else 'without'} its bytecode cache)")
    finally:
        lab.stop_all()


def main() -> int:
    why = can_run_sshd()
    kamal = real_kamal()
    if why is not None or kamal is None:
        print(f"benchmarks/oracle.py skipped: {why or 'the real Kamal is not installed'} "
              "(make e2e installs it)")
        return 0
    existed = subprocess.run(["id", DEPLOY_USER], capture_output=True,
                             check=False).returncode == 0
    ensure_user(DEPLOY_USER)
    base = Path(tempfile.mkdtemp(prefix="kamal-secure-bench-oracle-"))
    try:
        measure(base, kamal)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not existed:
            remove_user(DEPLOY_USER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
