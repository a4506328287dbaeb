from __future__ import annotations

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
