"""The remote write script (actions.PUT), run here with a chosen set of tools on PATH:
every digest fallback, a short input, a changed file, no digest tool at all."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from kamal_secure.remote.actions import put_argv

BASE_TOOLS = ("sh", "cat", "cut", "mktemp", "wc", "tr", "chmod", "mv", "sync", "dirname",
              "mkdir", "rm", "sed")
DIGESTS = ("sha256sum", "shasum", "openssl")


def toolbox(tmp_path: Path, digests: tuple[str, ...]) -> Path:
    """A PATH directory with the basic tools and only these digest tools."""
    box = tmp_path / "bin"
    box.mkdir()
    for name in (*BASE_TOOLS, *digests):
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed here")
        (box / name).symlink_to(found)
    if "shasum" in digests:  # shasum is a Perl script: it needs perl
        (box / "perl").symlink_to(shutil.which("perl") or "/usr/bin/perl")
    return box


def put(box: Path, target: Path, data: bytes, sent: bytes | None = None,
        before: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    argv = put_argv(str(target), data, "600", before)
    return subprocess.run(argv, input=data if sent is None else sent, capture_output=True,
                          env={"PATH": str(box), "HOME": str(target.parent)}, check=False,
                          timeout=30)


@pytest.mark.parametrize("digest", DIGESTS)
def test_each_digest_tool_verifies_and_replaces(digest: str, tmp_path: Path) -> None:
    box = toolbox(tmp_path, (digest,))
    target = tmp_path / "authorized_keys"
    target.write_bytes(b"old line\n")
    new = b"ssh-ed25519 AAAA new\n" * 3
    done = put(box, target, new, before=b"old line\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert target.read_bytes() == new
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    short = put(box, target, b"x" * 100, sent=b"x" * 40)  # the connection dropped
    assert short.returncode == 7, short.stdout
    assert b"received 40 of 100 bytes" in short.stdout
    assert target.read_bytes() == new
    wrong = put(box, target, b"a" * 10, sent=b"b" * 10)  # same length, other bytes
    assert wrong.returncode == 7
    assert b"does not match its SHA-256" in wrong.stdout
    assert target.read_bytes() == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authorized_keys", "bin"]  # no temp


def test_a_file_changed_since_it_was_read_is_not_replaced(tmp_path: Path) -> None:
    box = toolbox(tmp_path, ("sha256sum",))
    target = tmp_path / "authorized_keys"
    target.write_bytes(b"someone else's edit\n")
    done = put(box, target, b"ours\n", before=b"what we read\n")
    assert done.returncode == 3
    assert b"changed while we worked" in done.stdout
    assert target.read_bytes() == b"someone else's edit\n"


def test_no_digest_tool_refuses(tmp_path: Path) -> None:
    box = toolbox(tmp_path, ())
    target = tmp_path / "authorized_keys"
    target.write_bytes(b"old\n")
    done = put(box, target, b"new\n")
    assert done.returncode == 6
    assert b"no sha256sum, shasum or openssl" in done.stdout
    assert target.read_bytes() == b"old\n"
