from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import write_standin

SECURE_CONFIG = """\
service: shop
image: acme/shop
servers:
  - 127.0.0.1
ssh:
  user: deploy
  keys: ["~/.ssh/kamal_deploy_key"]
  keys_only: true
  forward_agent: false
"""

INSECURE_CONFIG = """\
service: shop
image: acme/shop
servers:
  - 127.0.0.1
aliases:
  ship: deploy
  tail: app logs -f
  ship2: ship
"""


@pytest.fixture
def standin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "standin-bin"
    write_standin(directory)
    return directory


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.json"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "config").mkdir(parents=True)
    (root / "config" / "deploy.yml").write_text(INSECURE_CONFIG)
    (root / "config" / "deploy.secure.yml").write_text("")
    return root


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every process it starts) gets a HOME of its own with a real deploy key,
    so nothing reads or writes the real ~/.ssh."""
    home = tmp_path_factory.mktemp("home")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    ssh.chmod(0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    f"kamal-deploy:shop:{dt.date.today().isoformat()}",
                    "-f", str(ssh / "kamal_deploy_key")], check=True)
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is not None:
        os.environ["HOME"] = old
