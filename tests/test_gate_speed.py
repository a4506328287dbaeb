"""What the gate does to be fast must not change what it checks (issue 11).

The verdict process is forked before the kamal is known to be guardable: it may contact
hosts only after kamal-secure wrote "go" (``_told_to_go``). paramiko is imported without
invoke (only its own `Match exec` needs it), and still works.
"""

from __future__ import annotations

import os
import subprocess
import sys

from kamal_secure.gate.oracle.verdict import _told_to_go


def _pipe(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def test_go_only_when_told() -> None:
    assert _told_to_go(_pipe(b"go")) is True
    assert _told_to_go(_pipe(b"")) is False  # not guardable, or kamal-secure is gone
    assert _told_to_go(_pipe(b"g")) is False
    assert _told_to_go(_pipe(b"no")) is False
    assert _told_to_go(None) is True  # no pipe: the caller decided already


def test_go_closes_its_pipe() -> None:
    read = _pipe(b"go")
    _told_to_go(read)
    try:
        os.fstat(read)
    except OSError:
        return
    raise AssertionError("the go pipe was left open")


def test_paramiko_without_invoke() -> None:
    code = ("import sys\n"
            "from kamal_secure.remote import session\n"
            "assert sys.modules.get('invoke') is None, 'invoke was imported'\n"
            "key = session.paramiko.Ed25519Key.from_private_key_file\n"
            "t = session.paramiko.Transport\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
