"""The e2e tier's one way to find the real Kamal (installed by scripts/install-kamal.sh)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def real_kamal() -> Path:
    value = os.environ.get("KAMAL_E2E_BIN")
    if not value:
        pytest.fail("KAMAL_E2E_BIN is not set: run `make e2e`, which installs the real Kamal")
    path = Path(value)
    assert path.is_file(), f"{path} missing"
    return path
