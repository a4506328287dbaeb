"""Where kamal cannot be guarded (this Python stand-in is not Ruby): the fallback model refuses
configs it cannot resolve the way Kamal would, and says why; plain configs still gate and run."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.project import SECURE_CONFIG
from testing.standin import run_ks

CONFIGS = {
    "erb-in-comment": (SECURE_CONFIG + '# <%= "\\n  extra: 1" %>\n', "ERB in a YAML comment"),
    "erb-statement": (SECURE_CONFIG + "<% if true %>\nlabels: {a: b}\n<% end %>\n", "ERB"),
    "merge-key": (SECURE_CONFIG.replace("servers:\n  - 127.0.0.1\n",
                                        "servers:\n  web: &w\n    hosts: [127.0.0.1]\n"
                                        "  job:\n    hosts: [127.0.0.2]\n    <<: *w\n"),
                  "merge key"),
    "symbol-key": (SECURE_CONFIG + ":servers:\n  - 127.0.0.9\n", "symbol key"),
    "erb-ssh": (SECURE_CONFIG.replace("user: deploy", "user: <%= ENV['U'] %>"),
                "ssh settings produced by ERB"),
    "ssh-include": (SECURE_CONFIG.replace("  forward_agent: false\n",
                                          "  forward_agent: false\n  config: ssh_config\n"),
                    "brought in by Include"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_fallback_refuses_configs_it_cannot_resolve(case: str, tmp_path: Path,
                                                    standin_dir: Path, record: Path) -> None:
    text, says = CONFIGS[case]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(text)
    (tmp_path / "ssh_config").write_text(f"Include {tmp_path}/included\n")
    (tmp_path / "included").write_text("Host 127.0.0.1\n  HostName 127.0.0.9\n")
    run = run_ks(["server", "exec", "whoami"], tmp_path, [standin_dir], record)
    assert run.code == 2, run.stderr
    assert "cannot be guarded" in run.stderr
    assert says in run.stderr
    assert run.record is None


def test_fallback_still_gates_and_runs_a_plain_config(tmp_path: Path, standin_dir: Path,
                                                      record: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(SECURE_CONFIG)
    run = run_ks(["server", "exec", "whoami"], tmp_path, [standin_dir], record)
    assert "cannot be guarded" in run.stderr
    assert run.code == 0, run.stderr
    assert run.argv == [b"server", b"exec", b"whoami"]
