"""No planted secret value appears in any output format, whichever rule finds it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from testing.cli import run_cli
from testing.project import write_project
from testing.standin import FAKE_RUBY_KAMAL, run_ks, write_standin

SECRETS = {
    "aws": "AKIAQ3EGRTYUIOPLKJHG",
    "github": "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5",
    "stripe": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "entropy": "8f3kq0Zr1xWv9LmP2nB7tY4cH6jD5sA0",
    "registry": "Zm9vYmFyYmF6cXV4cXV1eA",
    "url": "Tr0ub4dor3xyzzy",
    "pem": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "file": "kQ9vX2mZ7pL4wR8tY6uI",
    "pem-line": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo",
    "as-key": "ghp_Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8",
}
CONFIG = f"""\
service: shop
image: acme/shop
servers:
  web:
    hosts: [203.0.113.10]
    cmd: bin/start --key {SECRETS["github"]}
registry:
  username: acme
  password: {SECRETS["registry"]}
env:
  clear:
    AWS_ACCESS_KEY_ID: {SECRETS["aws"]}
    SECRET_KEY_BASE: {SECRETS["entropy"]}
    DATABASE_URL: postgres://app:{SECRETS["url"]}@db/app
builder:
  arch: amd64
  args:
    STRIPE_KEY: {SECRETS["stripe"]}
ssh:
  {SECRETS["as-key"]}: pasted into the wrong place
  key_data:
    - "-----BEGIN OPENSSH PRIVATE KEY-----\\n{SECRETS["pem"]}\\n-----END OPENSSH PRIVATE KEY-----"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, {
        "config/deploy.yml": CONFIG,
        ".kamal/secrets": f"POSTGRES_PASSWORD={SECRETS['file']}\n"
                          'SSH_KEY="-----BEGIN OPENSSH PRIVATE KEY-----\n'
                          f"{SECRETS['pem-line']}==\n"
                          '-----END OPENSSH PRIVATE KEY-----"\n',
        ".kamal/hooks/pre-deploy": "#!/bin/sh\nset -x\nprintenv\n",
    })


def _assert_clean(text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name} leaked"
        assert value[6:] not in text, f"{name} leaked in part"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_in_output(project: Path, fmt: str) -> None:
    run = run_cli(["scan", "--offline", "--format", fmt, "--color"], project)
    assert run.code == 1
    _assert_clean(run.stdout + run.stderr)
    if fmt == "json":
        rules = {f["rule"] for f in json.loads(run.stdout)["findings"]}
        assert {"KS201", "KS203", "KS204", "KS205", "KS105", "KS207"} <= rules


def test_no_secret_in_output_file(project: Path) -> None:
    run = run_cli(["scan", "--offline", "--format", "json", "--output", "report.json"], project)
    assert run.code == 1
    _assert_clean((project / "report.json").read_text())


@pytest.mark.parametrize("kamal", ["python-standin", "ruby-fake"])
def test_no_secret_in_the_gate_output(project: Path, kamal: str, tmp_path: Path) -> None:
    """Through the fallback model (a non-Ruby kamal) and through the Ruby guard, whose
    verdict process gets the config as Kamal holds it."""
    if kamal == "ruby-fake":
        if shutil.which("ruby") is None:
            pytest.skip("ruby is installed by scripts/system-deps.sh")
        directory = tmp_path / "fake-bin"
        directory.mkdir()
        (directory / "kamal").write_text(FAKE_RUBY_KAMAL)
        (directory / "kamal").chmod(0o755)
    else:
        directory = write_standin(tmp_path / "standin-bin").parent
    run = run_ks(["deploy"], project, [directory], tmp_path / "record.json",
                 env={"FAKE_MARKER": str(tmp_path / "ran")})
    assert run.code == 1, run.stderr
    assert not (tmp_path / "ran").exists()
    _assert_clean(run.stdout + run.stderr)
