"""The wheel carries the schemas and the hook templates and works from another directory."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from testing.cli import REPO
from testing.project import INSECURE_CONFIG


@pytest.mark.slow
def test_wheel_installs_and_scans_from_elsewhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(REPO)], check=True, timeout=300, cwd=tmp_path,
                   capture_output=True)
    wheel = next(dist.glob("kamal_secure-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The wheel alone goes into the new venv; its dependencies are the locked ones of this
    # venv (a plain path in a .pth: the repo's editable install there is not activated).
    target = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    (target / "locked_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=600)
    app = tmp_path / "elsewhere" / "app"
    (app / "config").mkdir(parents=True)
    (app / "config" / "deploy.yml").write_text(INSECURE_CONFIG)
    out = subprocess.run([str(venv / "bin" / "kamal-secure"), "scan", "--offline",
                          "--format", "json"], cwd=app, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 1, out.stderr
    assert "KS100" in {f["rule"] for f in json.loads(out.stdout)["findings"]}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from kamal_secure.resources import data_dir; "
         "print(data_dir('schema').joinpath('report.schema.json')); "
         "print(data_dir('hook_templates').joinpath('README.md'))"],
        cwd=app, capture_output=True, text=True, check=True, timeout=60)
    report_schema, hooks_readme = map(Path, where.stdout.split())
    assert str(venv) in str(report_schema)
    assert str(venv) in str(hooks_readme)
    assert report_schema.is_file()
    assert hooks_readme.is_file()
