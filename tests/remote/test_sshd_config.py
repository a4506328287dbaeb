from __future__ import annotations

from kamal_secure.remote.facts import SshdConfig
from tests.hostfacts import sshd_of


def test_first_value_wins_case_insensitive() -> None:
    c = sshd_of("passwordauthentication NO\nPasswordAuthentication yes\n")
    assert c.flag("PasswordAuthentication") == "no"


def test_challenge_response_is_an_alias() -> None:
    c = sshd_of("ChallengeResponseAuthentication yes\nKbdInteractiveAuthentication no\n")
    assert c.flag("kbdinteractiveauthentication") == "yes"


def test_include_glob_lexical_order() -> None:
    files = {"/etc/ssh/sshd_config.d/99-z.conf": "PasswordAuthentication no\n",
             "/etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n"}
    c = sshd_of("Include sshd_config.d/*.conf\nPasswordAuthentication no\n", files=files)
    assert c.flag("passwordauthentication") == "yes"


def test_match_user_and_address() -> None:
    text = ("PasswordAuthentication no\nMatch User deploy\n  PasswordAuthentication yes\n"
            "Match Address 10.0.0.0/8,!10.9.9.9\n  PermitRootLogin yes\n")
    assert sshd_of(text).flag("passwordauthentication") == "yes"
    assert sshd_of(text, user="alice").flag("passwordauthentication") == "no"
    assert sshd_of(text, addr="10.1.2.3").flag("permitrootlogin") == "yes"
    assert sshd_of(text, addr="10.9.9.9").flag("permitrootlogin") == "prohibit-password"


def test_match_in_included_file_ends_with_it() -> None:
    files = {"/etc/ssh/d/a.conf": "Match User nobody\n  X11Forwarding yes\n"}
    c = sshd_of("Include /etc/ssh/d/*.conf\nX11Forwarding no\n", files=files)
    assert c.flag("x11forwarding") == "no"


def test_defaults_and_lists() -> None:
    c = sshd_of("AllowUsers a b\nAllowUsers c\n")
    assert c.all("allowusers") == ["a", "b", "c"]
    assert c.flag("kbdinteractiveauthentication") == "yes"


def test_parse_sshd_t_output() -> None:
    c = SshdConfig.parse("port 22\nhostkey /a\nhostkey /b\npermitrootlogin without-password\n")
    assert c.all("hostkey") == ["/a", "/b"]
    assert c.number("port") == 22


def test_unreadable_main_file_is_unknown_not_defaults() -> None:
    from kamal_secure.remote.sshd_config import ConnInfo, derive

    files: dict[str, str] = {}
    config, notes = derive(ConnInfo("deploy", "192.0.2.1"), files.get, lambda _: [])
    assert config is None
    assert notes == ["could not read /etc/ssh/sshd_config"]
