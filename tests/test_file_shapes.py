"""Every file kamal-secure reads, fed every JSON/YAML top-level type, empty, binary and
truncated input: exit 2 with the file named and a reason, never a crash or a silent default.
In-process through cli.main (one process, many cases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kamal_secure import cli
from testing.project import write_project

VALID_BASELINE = b'{"tool": "kamal-secure", "version": 1, "fingerprints": []}'
VALID_JOURNAL = (b'{"config_file": "config/deploy.yml", "old_key": "a", "new_key": "b", '
                 b'"step": "added", "hosts": {"web": "add new done"}, "retired_as": null}')
INPUTS: dict[str, bytes] = {
    "null": b"null\n", "true": b"true\n", "false": b"false\n", "int": b"1\n",
    "float": b"1.5\n", "string": b'"text"\n', "list": b"[1, 2]\n", "empty-list": b"[]\n",
    "object": b'{"a": 1}\n', "empty-object": b"{}\n",
    "yaml-list": b"- a\n- b\n", "yaml-scalar": b"hello\n", "yaml-map": b"a: [1\n",
    "empty": b"", "blank": b"  \n\n", "binary": bytes(range(256)), "nul": b"\x00",
    "invalid-utf8": b"caf\xe9\n",
    "truncated-baseline": VALID_BASELINE[:40], "truncated-journal": VALID_JOURNAL[:60],
    "truncated-yaml": b"hosts:\n  max_auth_tries: [1,\n",
    "wrong-types": (b'{"tool": "kamal-secure", "fingerprints": "x", "config_file": 1, '
                    b'"old_key": [], "new_key": {}, "hosts": 5}'),
    "fingerprints-not-strings": b'{"tool": "kamal-secure", "fingerprints": [1, null]}',
    "known-hosts-truncated": b"127.55.250.250 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n",
}
# inputs that are a valid (if unusual) instance of a file: not an error there
VALID = {"policy": {"null", "empty", "blank", "empty-object"},
         "known_hosts": {"empty", "blank"}}
HOST = "127.55.250.250"  # loopback; nothing listens there and nothing is sent


def _project(root: Path) -> Path:
    return write_project(root, {"config/deploy.yml":
                                f"service: shop\nimage: acme/shop\nservers:\n  - {HOST}\n"})


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out + out.err


FILES = {
    "policy": (".kamal/secure.yml", ["scan", "--offline"]),
    "baseline": ("base.json", ["scan", "--offline", "--baseline", "base.json"]),
    "journal": (".kamal/secure-rotation.json", ["rotate-key", "--resume"]),
    "known_hosts": (".kamal/known_hosts", ["scan"]),
}


@pytest.mark.parametrize("kind", sorted(FILES))
@pytest.mark.parametrize("case", sorted(INPUTS))
def test_each_file_by_shape(kind: str, case: str, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path / "app")
    name, args = FILES[kind]
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(INPUTS[case])
    monkeypatch.chdir(root)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # only the files of this test
    for var in ("KAMAL_SECURE_OFFLINE", "KAMAL_SECURE_BASELINE", "KAMAL_SECURE_FAIL_ON"):
        monkeypatch.delenv(var, raising=False)
    code, output = _run(args, capsys)
    assert "Traceback" not in output
    assert "internal error" not in output
    if case in VALID.get(kind, set()):
        assert code != 2 or name not in output, output
        return
    assert code == 2, output
    first = output.strip().splitlines()[0]
    assert first.startswith("kamal-secure: error: ")
    assert Path(name).name in first, first  # the file is named
    assert len(first) > len("kamal-secure: error: ") + len(name) + 5  # and a reason


@pytest.mark.parametrize("case", sorted(INPUTS))
def test_baseline_from_the_environment(case: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's crash: KAMAL_SECURE_BASELINE pointing at a JSON list (AttributeError)."""
    root = _project(tmp_path / "app")
    (root / "base.json").write_bytes(INPUTS[case])
    monkeypatch.chdir(root)
    monkeypatch.setenv("KAMAL_SECURE_BASELINE", "base.json")
    monkeypatch.setenv("KAMAL_SECURE_OFFLINE", "1")
    monkeypatch.setenv("KAMAL_SECURE_KAMAL", "/bin/false")  # never reached
    code, output = _run(["deploy"], capsys)
    assert code == 2, output
    assert "Traceback" not in output
    # /bin/false is not Ruby: the fallback says so first, then the baseline error
    assert "\nkamal-secure: error: KAMAL_SECURE_BASELINE base.json" in "\n" + output


@pytest.mark.parametrize("value", ["x", "0" * 63, "g" * 64, "[]", "{}", "null", "\u202e" * 64])
def test_gate_digest_in_a_hook_is_checked_by_shape(value: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path / "app")
    monkeypatch.chdir(root)
    monkeypatch.setenv("KAMAL_SECURE_GATE_DIGEST", value)
    monkeypatch.setenv("KAMAL_SECURE_GATE_HOSTS", HOST)
    monkeypatch.setenv("KAMAL_HOSTS", HOST)
    # run in-process, so there is no Kamal parent to read the config from: say it here
    from kamal_secure.commands import hook_runner as hook

    monkeypatch.setattr(hook, "running_config", lambda environ: ("config/deploy.yml", None))
    code, output = _run(["hook", "pre-deploy"], capsys)
    assert code == 2, output
    assert "KAMAL_SECURE_GATE_DIGEST: not a kamal-secure gate digest" in output


def test_a_valid_baseline_and_journal_still_load(tmp_path: Path) -> None:
    from kamal_secure.policy import baseline
    from kamal_secure.remediate.rotate import JOURNAL, Journal

    (tmp_path / "b.json").write_bytes(VALID_BASELINE)
    assert baseline.read(tmp_path / "b.json") == frozenset()
    (tmp_path / JOURNAL).parent.mkdir(parents=True)
    (tmp_path / JOURNAL).write_bytes(VALID_JOURNAL)
    journal = Journal.load(tmp_path)
    assert journal is not None
    assert journal.hosts == {"web": "add new done"}
