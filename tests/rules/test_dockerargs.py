"""Options as Kamal renders them (optionize), mount paths and published ports."""

from __future__ import annotations

import pytest

from kamal_secure.config.erb import DYNAMIC
from kamal_secure.rules.dockerargs import Flag, flags, host_path, public_port


@pytest.mark.parametrize(("options", "expected"), [
    ({"privileged": True}, [("privileged", None)]),
    ({"privileged=true": True}, [("privileged", "true")]),
    ({"cap-add": ["SYS_ADMIN", "CHOWN"]}, [("cap-add", "SYS_ADMIN"), ("cap-add", "CHOWN")]),
    ({"cap-add=SYS_ADMIN": True}, [("cap-add", "SYS_ADMIN")]),
    ({"pid host": True}, [("pid", "host")]),  # the key is not escaped: two words
    ({"privileged --pid=host": True}, [("privileged", None), ("pid", "host")]),
    ({"v": "/a:/b"}, [("volume", "/a:/b")]),
    ({"init": True, "memory": "1g"}, [("init", None), ("memory", "1g")]),
    ({"privileged": False}, []),
])
def test_flags_follow_optionize(options: dict[str, object],
                                expected: list[tuple[str, str | None]]) -> None:
    got = list(flags(options, ("options",)))
    assert [(f.name, f.value) for f in got] == expected
    assert all(isinstance(f, Flag) and f.path[0] == "options" for f in got)


@pytest.mark.parametrize(("spec", "host"), [
    ("//var/run/docker.sock:/var/run/docker.sock:ro", "/run/docker.sock"),
    ("/var/run/../run/docker.sock/:/d", "/run/docker.sock"),
    ("type=bind,source=/etc/,target=/e,readonly", "/etc"),
    ("type=volume,source=data,target=/d", None),
    ("data:/d", None),
    ("/:/host", "/"),
])
def test_host_paths_are_normalised(spec: str, host: str | None) -> None:
    assert host_path(spec) == host


@pytest.mark.parametrize(("spec", "public"), [
    (5432, True), ("5432:5432", True), ("0.0.0.0:5432:5432", True), ("[::]:5432:5432", True),
    (DYNAMIC * 4 + ":5432", True), ("127.0.0.1:5432:5432", False), ("[::1]:80:80", False),
    ("10.0.0.5:" + DYNAMIC * 3 + ":80", False), (DYNAMIC * 4 + ":80:80", False),
    (DYNAMIC * 6, False), (None, False),
])
def test_public_ports(spec: object, public: bool) -> None:
    assert public_port(spec) is public
