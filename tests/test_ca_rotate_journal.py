"""`ca rotate` without hosts: its journal (the persistence shared with rotate-key), the
TrustedUserCAKeys file edits, and what is refused before any host is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kamal_secure.errors import UsageError
from kamal_secure.remediate.ca_rotate import JOURNAL, CaJournal, holds, with_line, without_line
from testing.cli import run_cli
from testing.project import write_project

OLD = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLD"
NEW = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINEW"


def test_the_file_edits_keep_other_lines_and_never_duplicate() -> None:
    current = f"# ours\n{OLD} a comment\n"
    added = with_line(current, NEW)
    assert added == f"# ours\n{OLD} a comment\n{NEW}\n"
    assert with_line(added, NEW) == added
    assert holds(added, OLD)
    assert holds(added, NEW)
    removed = without_line(added, OLD)
    assert removed == f"# ours\n{NEW}\n"
    assert not holds(removed, OLD)
    assert without_line(removed, OLD) == removed  # nothing to remove: unchanged, byte for byte
    assert not holds(None, NEW)


def journal_file(root: Path, data: dict[str, object]) -> None:
    (root / JOURNAL).parent.mkdir(parents=True, exist_ok=True)
    (root / JOURNAL).write_text(json.dumps(data))


def test_the_journal_round_trips_and_is_written_0600(tmp_path: Path) -> None:
    journal = CaJournal("/k/ca", OLD, "/k/ca-rotated-1", "policy")
    journal.hosts["web"] = "add new started"
    journal.advance(tmp_path, "generated")
    assert (tmp_path / JOURNAL).stat().st_mode & 0o777 == 0o600
    loaded = CaJournal.load(tmp_path)
    assert loaded == journal
    CaJournal.remove(tmp_path)
    assert CaJournal.load(tmp_path) is None


@pytest.mark.parametrize(("data", "message"), [
    ({"old_ca": "/k/ca", "new_ca": "/n", "source": "policy"}, "'old_line' is missing"),
    ({"old_ca": "/k/ca", "old_line": OLD, "new_ca": "/n", "source": "policy", "x": 1},
     "unknown key 'x'"),
    ({"old_ca": "/k/ca", "old_line": OLD, "new_ca": "/n", "source": "policy",
      "aborting": "yes"}, "aborting is a string, expected true or false"),
    ({"old_ca": "/k/ca", "old_line": OLD, "new_ca": "/n", "source": "policy",
      "step": "halfway"}, "unknown step 'halfway'"),
    ({"old_ca": "/k/ca", "old_line": OLD, "new_ca": "/n", "source": "policy",
      "hosts": {"web": "rm -rf"}}, "hosts.web: unknown change 'rm -rf'"),
])
def test_a_journal_of_the_wrong_shape_is_refused(data: dict[str, object], message: str,
                                                 tmp_path: Path) -> None:
    journal_file(tmp_path, data)
    with pytest.raises(UsageError, match=r"secure-ca-rotation\.json") as raised:
        CaJournal.load(tmp_path)
    assert message in raised.value.message


def test_refused_before_any_host(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    app = write_project(tmp_path / "app", {})
    env = {"HOME": str(home)}
    subset = run_cli(["ca", "rotate", "--yes", "-h", "1.2.3.4"], app, env)
    assert subset.code == 2
    assert "-h/-r are not taken" in subset.stderr
    nothing = run_cli(["ca", "rotate", "--resume"], app, env)
    assert nothing.code == 2
    assert "no CA rotation in progress" in nothing.stderr
    journal_file(app, {"old_ca": "/k/ca", "old_line": OLD, "new_ca": "/n", "source": "policy"})
    again = run_cli(["ca", "rotate", "--yes"], app, env)
    assert again.code == 2
    assert "a CA rotation is in progress (step started)" in again.stderr
