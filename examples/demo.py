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


def run_gate(app: Path, home: Path) -> int:
    # The example apps name documentation addresses (203.0.113.x): never connect to them.
    env = dict(os.environ, HOME=str(home), KAMAL_SECURE_KAMAL=str(STANDIN),
               KAMAL_SECURE_OFFLINE="1")
    env.pop("KAMAL_SECURE_SKIP", None)
    cmd = [sys.executable, "-m", "kamal_secure", "deploy", "-d", "production"]
    print(f"$ cd {app.name} && kamal-secure deploy -d production", flush=True)
    (app / "config" / "deploy.production.yml").write_text("# production: same as base\n")
    return subprocess.run(cmd, cwd=app, env=env, check=False).returncode


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kamal-secure-demo-") as tmp:
        base = Path(tmp)
        home = make_home(base)
        results = {}
        for name in ("insecure-app", "hardened-app"):
            app = base / name
            shutil.copytree(HERE / name, app)
            banner(f"{name}: the gate in front of `kamal deploy`")
            results[name] = run_gate(app, home)
            print(f"(exit status {results[name]})")
    ok = results["insecure-app"] == 1 and results["hardened-app"] == 0
    banner("demo " + ("passed: insecure refused, hardened deployed" if ok else
                      f"FAILED: unexpected exit statuses {results}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
