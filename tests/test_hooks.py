"""Kamal hooks: install chains to an existing hook, uninstall restores it exactly."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from kamal_secure.resources import hook_template
from testing.cli import Result, run_cli
from testing.project import SECURE_CONFIG
from testing.standin import run_ks

BIN = str(Path(sys.executable).parent)
SECRETS = {"KAMAL_REGISTRY_PASSWORD": "reg-Zq9vLx2Wm4Tn8Rp1",
           "RAILS_MASTER_KEY": "mk-8f3a9c0d1e2b4f6a"}


def hooks(app: Path, *args: str) -> tuple[int, str]:
    run = run_ks(["hooks", *args], app, [], app.parent / "rec.json")
    return run.code, run.stdout + run.stderr


# The stand-in `kamal` at the exec boundary: like Kamal, it runs the hook as a child, so
# the hook finds its command line (-c, -d) among its parents.
STAND_IN = '#!/bin/sh\n"$KS_TEST_HOOK"\nstatus=$?\nexit $status\n'


def run_hook(app: Path, name: str, env: dict[str, str] | None = None,
             path: str | None = None, kamal_args: tuple[str, ...] = ("deploy",)
             ) -> Result:
    stand_in = app.parent / "stand-in" / "kamal"
    stand_in.parent.mkdir(exist_ok=True)
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    return run_cli(kamal_args, app, {
        "PATH": path if path is not None else f"{BIN}:/usr/bin:/bin",
        "KAMAL_HOSTS": "127.0.0.1", "KAMAL_SECURE_OFFLINE": "1",
        "KS_TEST_HOOK": f".kamal/hooks/{name}", "KAMAL_COMMAND": "deploy", **SECRETS,
        **(env or {})}, program=[str(stand_in)])


def test_install_is_idempotent_and_executable(project: Path) -> None:
    code, out = hooks(project, "install")
    assert code == 0
    assert "pre-connect: installed" in out
    for name in ("pre-connect", "pre-deploy"):
        path = project / ".kamal" / "hooks" / name
        assert path.read_bytes() == hook_template(name)
        assert path.stat().st_mode & stat.S_IXUSR
    code, out = hooks(project, "install")
    assert "pre-connect: already installed" in out
    assert sorted(p.name for p in (project / ".kamal" / "hooks").iterdir()) == \
        ["pre-connect", "pre-deploy"]


def test_existing_hook_is_chained_and_restored_exactly(project: Path) -> None:
    hook_dir = project / ".kamal" / "hooks"
    hook_dir.mkdir(parents=True)
    theirs = hook_dir / "pre-connect"
    original = b"#!/bin/sh\n# their hook\necho theirs-ran > theirs.out\n"
    theirs.write_bytes(original)
    theirs.chmod(0o750)
    hooks(project, "install")
    assert (hook_dir / "pre-connect.kamal-secure-orig").read_bytes() == original
    code, out = hooks(project, "status")
    assert code == 0
    assert "pre-connect: kamal-secure, then your pre-connect.kamal-secure-orig" in out
    failing = run_hook(project, "pre-connect")  # the project fixture's config is insecure
    assert failing.code == 1
    assert not (project / "theirs.out").exists(), "their hook must not run when ours fails"
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    passing = run_hook(project, "pre-connect")
    assert passing.code == 0, passing.stderr
    assert (project / "theirs.out").read_text() == "theirs-ran\n"
    hooks(project, "uninstall")
    assert theirs.read_bytes() == original
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o750
    assert not (hook_dir / "pre-connect.kamal-secure-orig").exists()
    assert not (hook_dir / "pre-deploy").exists()


def test_hooks_path_from_config(project: Path) -> None:
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG + "hooks_path: ops/hooks\n")
    hooks(project, "install")
    assert (project / "ops" / "hooks" / "pre-deploy").is_file()
    assert not (project / ".kamal" / "hooks").exists()


def test_failing_hook_names_the_failure_and_never_prints_secrets(project: Path) -> None:
    hooks(project, "install")
    result = run_hook(project, "pre-deploy", env={"KAMAL_DESTINATION": "secure"},
                      kamal_args=("deploy", "-d", "secure"))
    assert result.code == 1
    assert "KS100" in result.stderr
    assert "full report: kamal-secure scan -d secure" in result.stderr
    for value in SECRETS.values():
        assert value not in result.stdout + result.stderr


def test_break_glass_in_hook(project: Path) -> None:
    hooks(project, "install")
    result = run_hook(project, "pre-connect", env={"KAMAL_SECURE_SKIP": "INC-9 hotfix"})
    assert result.code == 0
    assert "BREAK GLASS" in result.stderr
    assert "INC-9 hotfix" in (project / ".kamal" / "secure-audit.log").read_text()
    for value in SECRETS.values():
        assert value not in result.stderr


def test_hook_fails_closed_without_kamal_secure(project: Path) -> None:
    hooks(project, "install")
    result = run_hook(project, "pre-connect", path="/usr/bin:/bin")
    assert result.code == 1
    assert "kamal-secure is not on PATH" in result.stderr


def test_foreign_hook_left_alone_on_uninstall(project: Path) -> None:
    hook_dir = project / ".kamal" / "hooks"
    hook_dir.mkdir(parents=True)
    (hook_dir / "pre-deploy").write_text("#!/bin/sh\nexit 0\n")
    code, out = hooks(project, "uninstall")
    assert code == 0
    assert "pre-deploy: not ours, left alone" in out
    assert (hook_dir / "pre-deploy").read_text() == "#!/bin/sh\nexit 0\n"


def test_hook_checks_the_config_file_kamal_runs_with(project: Path) -> None:
    """`kamal -c other.yml`: the hook reads -c from the running Kamal's command line."""
    hooks(project, "install")
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    (project / "config" / "other.yml").write_text(SECURE_CONFIG.replace("user: deploy",
                                                                        "user: root"))
    default = run_hook(project, "pre-connect", kamal_args=("deploy",))
    assert default.code == 0, default.stderr
    other = run_hook(project, "pre-connect", kamal_args=("-c", "config/other.yml", "deploy"))
    assert other.code == 1, other.stderr
    assert "KS103" in other.stderr
    assert "full report: kamal-secure scan -c config/other.yml" in other.stderr
    spelled = run_hook(project, "pre-connect",
                       kamal_args=("deploy", "--config-file=config/other.yml"))
    assert spelled.code == 1, spelled.stderr


def test_hook_refuses_what_it_cannot_establish(project: Path) -> None:
    hooks(project, "install")
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    empty = run_hook(project, "pre-connect", env={"KAMAL_DESTINATION": ""},
                     kamal_args=("deploy", "-d", ""))
    assert empty.code == 2
    assert "empty destination" in empty.stderr
    mismatch = run_hook(project, "pre-connect", env={"KAMAL_DESTINATION": "secure"})
    assert mismatch.code == 2  # the command line has no -d: something else ran Kamal
    assert "destination" in mismatch.stderr
    service = run_hook(project, "pre-connect", env={"KAMAL_SERVICE": "billing"})
    assert service.code == 2
    assert "service" in service.stderr
    orphan = run_cli([], project, {"PATH": f"{BIN}:/usr/bin:/bin", "KAMAL_HOSTS": "127.0.0.1",
                                   "KAMAL_SECURE_OFFLINE": "1"},
                     program=[".kamal/hooks/pre-connect"])
    assert orphan.code == 2  # not under Kamal at all
    assert "cannot find the Kamal process" in orphan.stderr


def test_hook_checks_hosts_the_config_does_not_name(project: Path) -> None:
    """A host in KAMAL_HOSTS that the config does not list is checked, not dropped: nothing
    listens on it, so the hook stops Kamal (exit 3) naming it."""
    from testing.sshd import next_addr

    hooks(project, "install")
    (project / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    stranger = next_addr()
    result = run_hook(project, "pre-connect", env={
        "KAMAL_HOSTS": f"127.0.0.1,{stranger}", "KAMAL_SECURE_OFFLINE": "0",
        "KAMAL_SECURE_FAIL_ON": "critical"})
    assert result.code == 3, result.stderr
    assert stranger in result.stderr
    assert "KAMAL_HOSTS" in result.stderr  # where the host came from
