"""`make demo`: the gate refuses the insecure example and passes the hardened one.

Everything it needs (a throwaway HOME with a dedicated deploy key, copies of
the example apps) is made in a temporary directory. The "kamal" it execs is
the bundled stand-in (examples/bin/kamal), which only prints its arguments.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "bin" / "kamal"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def make_home(base: Path) -> Path:
    home = base / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    ssh.chmod(0o700)
    key = ssh / "kamal_deploy_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    "kamal-deploy:shop:demo", "-f", str(key)], check=True)
    return home


def run_gate(app: Path, home: Path, extra: dict[str, str]) -> int:
    env = dict(os.environ, HOME=str(home), KAMAL_SECURE_KAMAL=str(STANDIN), **extra)
    env.pop("KAMAL_SECURE_SKIP", None)
    if "KAMAL_SECURE_OFFLINE" not in extra:
        env.pop("KAMAL_SECURE_OFFLINE", None)
    cmd = [sys.executable, "-m", "kamal_secure", "deploy", "-d", "production"]
    print(f"$ cd {app.name} && kamal-secure deploy -d production", flush=True)
    (app / "config" / "deploy.production.yml").write_text("# production: same as base\n")
    return subprocess.run(cmd, cwd=app, env=env, check=False).returncode


def static_part(base: Path, home: Path) -> dict[str, int]:
    """The bundled apps name documentation addresses (203.0.113.x): never connect to them."""
    results = {}
    for name in ("insecure-app", "hardened-app"):
        app = base / name
        shutil.copytree(HERE / name, app)
        banner(f"{name}: the gate in front of `kamal deploy` (static checks only)")
        results[name] = run_gate(app, home, {"KAMAL_SECURE_OFFLINE": "1"})
        print(f"(exit status {results[name]})")
    return results


def live_part(base: Path, home: Path) -> dict[str, int]:
    import live_hosts

    why = live_hosts.why_not()
    if why is not None:
        banner(f"live host checks skipped: {why}; the demo stays static")
        return {}
    banner("live host checks: two throwaway loopback hosts behind the gate")
    try:
        return live_hosts.run(base / "live", home, HERE / "hardened-app", run_gate)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        # e.g. a container without the right to make mount namespaces (unshare -m)
        banner(f"live host checks skipped: a loopback sshd could not start ({err}); "
               "the demo stays static")
        return {}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kamal-secure-demo-") as tmp:
        base = Path(tmp)
        home = make_home(base)
        results = static_part(base, home)
        (base / "live").mkdir()
        live = live_part(base, home)
    ok = results["insecure-app"] == 1 and results["hardened-app"] == 0
    if live:
        ok = ok and live == {"fresh-cloud-host": 1, "hardened-host": 0}
        results.update(live)
    what = "insecure refused, hardened deployed"
    if live:
        what += "; fresh cloud host refused, hardened host deployed"
    banner("demo " + (f"passed: {what}" if ok else f"FAILED: unexpected exit statuses {results}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
