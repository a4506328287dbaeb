"""Rails' bin/kamal (a Bundler-style binstub around the real Kamal of the e2e install)
goes through kamal-secure after `binstub install`, while the bundled Kamal stays the real
one: passthrough byte-exact, a trap host refused, a hardened host reached, no loop."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testing.e2e import BIN, live_env, run, same, start
from testing.ruby import rubylib
from testing.sshd import DEPLOY_USER, Client, Lab
from testing.standin import BUNDLER_BINSTUB

pytestmark = [pytest.mark.e2e, pytest.mark.sshd]
# The e2e Kamal is unpacked Debian gems, not a Bundler install (its native gems are older
# than Kamal's gemspec asks for), so `bundler/setup` cannot resolve it offline: the binstub
# is Bundler's own text with that one line out and the gems found through GEM_PATH/RUBYLIB.
BINSTUB = BUNDLER_BINSTUB.replace('require "bundler/setup"\n',
                                  '# require "bundler/setup" (see the test module)\n')


def _bundled(app: Path, real_kamal: Path, env: dict[str, str]) -> dict[str, str]:
    (app / "bin").mkdir(exist_ok=True)
    (app / "bin" / "kamal").write_text(BINSTUB)
    (app / "bin" / "kamal").chmod(0o755)
    (app / "Gemfile").write_text('source "https://rubygems.org"\ngem "kamal"\n')
    gems = real_kamal.parent.parent / "usr/share/rubygems-integration/all"
    system = subprocess.run(["ruby", "-e", 'print Gem.path.join(":")'], capture_output=True,
                            text=True, check=True).stdout
    return dict(env, GEM_PATH=f"{gems}:{system}", RUBYLIB=rubylib(real_kamal))


def test_binstub_goes_through_the_gate(lab: Lab, client: Client, tmp_path: Path,
                                       real_kamal: Path) -> None:
    host, app = start(lab, client, tmp_path, hardened=True)
    env = _bundled(app, real_kamal, live_env(real_kamal, client))
    direct = run(["bin/kamal", "version"], app, env)
    assert direct.returncode == 0, direct.stderr
    install = run([f"{BIN}/kamal-secure", "binstub", "install"], app, env)
    assert install.returncode == 0, install.stdout + install.stderr
    assert run([f"{BIN}/kamal-secure", "hooks", "install"], app, env).returncode == 0
    for args in (["version"], ["config"], ["docs", "ssh"]):  # passthrough, byte-exact
        before = run([str(real_kamal), *args], app, env)
        after = run(["bin/kamal", *args], app, env)
        assert (after.returncode, same(after.stdout), same(after.stderr)) == (
            before.returncode, same(before.stdout), same(before.stderr)), args
    clean = run(["bin/kamal", "server", "exec", "whoami"], app, env)
    output = clean.stdout + clean.stderr
    assert clean.returncode == 0, output
    assert "finding(s)" in clean.stderr  # the gate ran (findings below the threshold shown)
    assert DEPLOY_USER in clean.stdout  # then the bundled Kamal ran whoami on the host
    assert f"Running /usr/bin/env whoami on {host.addr}" in output
    (app / "config" / "deploy.yml").write_text(
        (app / "config" / "deploy.yml").read_text().replace("user: kshdeploy", "user: root"))
    refused = run(["bin/kamal", "server", "exec", "whoami"], app,
                  dict(env, KAMAL_SECURE_FAIL_ON="high"))
    output = refused.stdout + refused.stderr
    assert refused.returncode in (1, 3), output  # 3: root cannot log in there either
    assert "KS103" in output  # root login
    assert "refused to run `kamal server exec`" in output
    assert "Running /usr/bin/env whoami" not in output  # Kamal never started
    # an inherited marker (a hook or script starting bin/kamal again) has another pid
    forged = run(["bin/kamal", "server", "exec", "whoami"], app,
                 dict(env, KAMAL_SECURE_FAIL_ON="high", KAMAL_SECURE_EXEC=f"1:{app}/bin/kamal"))
    assert forged.returncode in (1, 3), forged.stdout + forged.stderr
    assert "refused to run `kamal server exec`" in forged.stderr
    assert run([f"{BIN}/kamal-secure", "binstub", "uninstall"], app, env).returncode == 0
    assert (app / "bin" / "kamal").read_text() == BINSTUB
