from __future__ import annotations

from kamal_secure.facts.host import SshdConfig
from testing.hostfacts import sshd_of


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


def _derive(files: dict[str, str | None], user: str = "deploy",
            groups: tuple[str, ...] | None = None) -> tuple[SshdConfig | None, list[str]]:
    import fnmatch

    from kamal_secure.remote.sshd_config import ConnInfo, derive

    def read(path: str) -> str | None:
        return files.get(path, "")

    def glob(pattern: str) -> list[str] | None:
        return [p for p in files if fnmatch.fnmatchcase(p, pattern)]

    return derive(ConnInfo(user, "192.0.2.1", groups=groups), read, glob)


def test_an_unreadable_include_makes_everything_unknown() -> None:
    """A drop-in we cannot read may set anything (first value wins, or a Match block)."""
    config, notes = _derive({
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n"
                                "PasswordAuthentication no\nPermitRootLogin no\n",
        "/etc/ssh/sshd_config.d/50-cloud-init.conf": None})
    assert config is None
    assert "could not read /etc/ssh/sshd_config.d/50-cloud-init.conf" in notes


def test_a_missing_literal_include_is_absent_not_unknown() -> None:
    config, _ = _derive({"/etc/ssh/sshd_config": "Include /etc/ssh/extra.conf\n"
                                                 "PasswordAuthentication no\n"})
    assert config is not None
    assert config.flag("passwordauthentication") == "no"


def test_a_match_block_that_cannot_be_evaluated_is_unknown_not_skipped() -> None:
    config, notes = _derive({"/etc/ssh/sshd_config": (
        "PasswordAuthentication no\nMatch RDomain 5\n  PasswordAuthentication yes\n")})
    assert config is None
    assert any("RDomain" in note for note in notes)


def test_match_group_uses_the_users_groups() -> None:
    files: dict[str, str | None] = {"/etc/ssh/sshd_config": (
        "PasswordAuthentication no\nMatch Group admins\n  PasswordAuthentication yes\n")}
    config, _ = _derive(files, groups=("deploy", "admins"))
    assert config is not None
    assert config.flag("passwordauthentication") == "yes"
    config, _ = _derive(files, groups=("deploy",))
    assert config is not None
    assert config.flag("passwordauthentication") == "no"
    config, _ = _derive(files, groups=None)  # groups unknown: so is the result
    assert config is None
