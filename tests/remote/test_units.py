"""Pure parts of kamal_secure.remote: no network."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import ClassVar

import paramiko
import pytest

from kamal_secure.config.inventory import SshSettings
from kamal_secure.errors import ConfigError
from kamal_secure.facts.host import SOURCE_DERIVED, SOURCE_HOSTKEY, HostFile, SshdConfig
from kamal_secure.policy.file import HostPolicy, policy_for
from kamal_secure.remote import hostkeys, sshd
from kamal_secure.remote.authorized import parse_authorized_keys
from kamal_secure.remote.ssh_config import SshConfigError, resolve
from testing.sshd import keygen

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIMH53MTM+mUgJEFq8528noV8LT2xl+IFvsp3Hb+tvh88"


def test_authorized_keys_options_and_fingerprints() -> None:
    text = (f'# comment\nfrom="10.0.0.0/8,192.0.2.1",no-pty ssh-ed25519 {KEY} ci@shop\n'
            f"ssh-ed25519 {KEY}\nnot a key line\n")
    keys = parse_authorized_keys(text, "/home/d/.ssh/authorized_keys")
    assert [k.from_restriction for k in keys] == ["10.0.0.0/8,192.0.2.1", None]
    assert keys[0].fingerprint.startswith("SHA256:")
    assert keys[0].fingerprint == keys[1].fingerprint
    assert keys[0].comment == "ci@shop"
    assert KEY not in repr(keys)  # only fingerprints are kept


def test_ssh_config_hostname(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host web-1\n  HostName 127.55.9.9\n  Port 2222\n  User admin\n")
    ssh = SshSettings(config_files=(str(config),))
    assert resolve("web-1", ssh) == ("127.55.9.9", 22)  # Kamal passes its own port
    assert resolve("other", ssh) == ("other", 22)
    assert resolve("web-1", SshSettings(config_files=())) == ("web-1", 22)


def test_ssh_config_read_like_net_ssh(tmp_path: Path) -> None:
    """Include is followed (relative to the first file, globbed); Match exec is never run and
    counts for nothing (net-ssh evaluates only host/all). tests/e2e/test_model_vs_ruby.py
    compares this reader with net-ssh itself on generated files."""
    marker = tmp_path / "MATCH_EXEC_RAN"
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-web.conf").write_text("Host web-1\n  HostName 127.55.9.8\n")
    config = tmp_path / "config"
    config.write_text(f"Host *\n  Include conf.d/*.conf\n"
                      f'Match host db exec "touch {marker}"\n  HostName 127.55.2.2\n'
                      f'Match exec "touch {marker}"\n  HostName 127.55.3.3\n'
                      "Host jumped\n  ProxyJump bastion\nHost none\n  ProxyCommand none\n"
                      "Host *\n  HostName 127.55.1.1\n")
    ssh = SshSettings(config_files=(str(config),))
    assert resolve("web-1", ssh) == ("127.55.9.8", 22)
    assert resolve("db", ssh) == ("127.55.2.2", 22)
    assert resolve("other", ssh) == ("127.55.1.1", 22)
    assert resolve("none", ssh) == ("127.55.1.1", 22)  # ProxyCommand none: direct
    with pytest.raises(SshConfigError, match="ProxyJump"):
        resolve("jumped", ssh)
    assert resolve("jumped", SshSettings(config_files=(str(config),), proxy_command="nc %h %p")
                   ) == ("127.55.1.1", 22)  # deploy.yml's proxy wins, as in Kamal
    assert not marker.exists()


def test_ssh_config_from_erb_is_refused() -> None:
    from kamal_secure.config.erb import DYNAMIC

    with pytest.raises(SshConfigError, match="ERB"):
        resolve("web", SshSettings(config_files=(DYNAMIC * 8,)))


def test_ssh_config_include_loop_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(f"Include {config}\n")
    with pytest.raises(SshConfigError, match="nested"):
        resolve("web", SshSettings(config_files=(str(config),)))


class FakeHost:
    """sshd -T fails; the files are readable: the derived path."""

    files: ClassVar[dict[str, str]] = {
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n"
                                "PasswordAuthentication no\n",
        "/etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n",
        "/home/d/.ssh/authorized_keys": f"ssh-ed25519 {KEY} me\n",
    }
    unreadable: ClassVar[set[str]] = set()
    unlistable: ClassVar[set[str]] = set()

    def run(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
        marker = argv[3]
        if argv[2] == sshd.SCRIPT:
            return 0, (f"\n{marker} uid\n1000\n{marker} home\n/home/d\n{marker} conn\n"
                       f"192.0.2.1|192.0.2.9|22|x\n{marker} sshd \nsshd: no hostkeys\n")
        if argv[2] == sshd.GLOB_SCRIPT:
            prefix = argv[4].rstrip("*.conf")
            if prefix in self.unlistable:
                return 0, "?unlistable\n"
            return 0, "\n".join(p for p in self.files if p.startswith(prefix)) + "\n"
        if argv[2] == sshd.READ_SCRIPT:
            path = argv[4]
            if path in self.unreadable:
                return 0, f"\n{marker} unreadable\n"
            if path in self.files:
                return 0, f"\n{marker} ok\n{self.files[path]}"
            return 0, f"\n{marker} absent\n"
        out = "".join(f"\n{marker} {p}\n{self.files.get(p, '')}" for p in argv[4:])
        return 0, out


def test_derived_path_reads_files_with_sshd_semantics() -> None:
    facts = sshd.gather(FakeHost(), "d")
    assert facts.sshd is not None
    assert facts.sshd.source == SOURCE_DERIVED
    assert facts.sshd.flag("passwordauthentication") == "yes"
    assert facts.conn is not None
    assert facts.conn.addr == "192.0.2.1"
    assert facts.authorized_keys is not None
    assert [k.comment for k in facts.authorized_keys] == ["me"]


def test_an_unreadable_drop_in_makes_the_settings_unknown() -> None:
    class Host(FakeHost):
        unreadable: ClassVar[set[str]] = {"/etc/ssh/sshd_config.d/50-cloud-init.conf"}

    facts = sshd.gather(Host(), "d")
    assert facts.sshd is None  # not the values of the files that could be read
    assert "could not read /etc/ssh/sshd_config.d/50-cloud-init.conf" in facts.notes
    assert facts.authorized_keys is None


def test_an_unlistable_include_directory_makes_the_settings_unknown() -> None:
    class Host(FakeHost):
        unlistable: ClassVar[set[str]] = {"/etc/ssh/sshd_config.d/"}

    facts = sshd.gather(Host(), "d")
    assert facts.sshd is None
    assert any("could not be listed" in note for note in facts.notes)


def test_an_empty_drop_in_is_read_not_unknown() -> None:
    class Host(FakeHost):
        files: ClassVar[dict[str, str]] = {
            **FakeHost.files, "/etc/ssh/sshd_config.d/50-cloud-init.conf": ""}

    facts = sshd.gather(Host(), "d")
    assert facts.sshd is not None
    assert facts.sshd.flag("passwordauthentication") == "no"


def test_sshd_t_output_is_used_when_present() -> None:
    class Host(FakeHost):
        def run(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
            if argv[2] == sshd.SCRIPT:
                assert stdin.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
                m = argv[3]
                return 0, (f"{m} uid\n1000\n{m} home\n/home/d\n{m} conn\n1|2|22|x\n"
                           f"{m} sshd hostkey\npasswordauthentication no\n"
                           "authorizedkeysfile /etc/ssh/keys/%u %h/.ssh/authorized_keys\n")
            return super().run(argv, stdin)

    facts = sshd.gather(Host(), "d")
    assert facts.sshd is not None
    assert facts.sshd.source == SOURCE_HOSTKEY
    assert sshd.authorized_keys_paths(facts, "d") == ["/etc/ssh/keys/d",
                                                      "/home/d/.ssh/authorized_keys"]


def _key() -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(str(_keyfile()))


def _keyfile() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "k"
    keygen(path)
    return path


def test_hostkeys_unknown_and_changed() -> None:
    key, other = _key(), _key()
    with pytest.raises(hostkeys.HostKeyUnknown, match="unknown host key") as unknown:
        hostkeys.verify({}, ["[127.0.0.1]:2222"], key)
    assert "[127.0.0.1]:2222 ssh-ed25519" in (unknown.value.hint or "")
    with pytest.raises(hostkeys.HostKeyChanged) as changed:
        hostkeys.verify({"ssh-ed25519": other}, ["h"], key)
    assert hostkeys.fingerprint(key) in changed.value.message
    assert hostkeys.fingerprint(other) in changed.value.message
    hostkeys.verify({"ssh-ed25519": key}, ["h"], key)


def test_key_names() -> None:
    assert hostkeys.key_name("127.0.0.1", 22) == "127.0.0.1"
    assert hostkeys.key_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_policy_file(tmp_path: Path) -> None:
    assert policy_for(tmp_path).hosts == HostPolicy()
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secure.yml").write_text(
        "hosts:\n  max_auth_tries: 6\n  tcp_forwarding: [no]\n  timeout: 2.5\n")
    policy = policy_for(tmp_path).hosts
    assert (policy.max_auth_tries, policy.tcp_forwarding, policy.timeout) == (6, ("no",), 2.5)
    (tmp_path / ".kamal" / "secure.yml").write_text("hosts:\n  max_auth_trie: 6\n")
    with pytest.raises(ConfigError, match="unknown key"):
        policy_for(tmp_path)
    (tmp_path / ".kamal" / "secure.yml").write_text(
        "hosts:\n  banner: required\n  print_last_log: no\n  port: 2222\n")
    policy = policy_for(tmp_path).hosts
    assert (policy.banner, policy.print_last_log, policy.port) == ("required", "no", 2222)
    (tmp_path / ".kamal" / "secure.yml").write_text("hosts:\n  banner: maybe\n")
    with pytest.raises(ConfigError, match="one of required, none, any"):
        policy_for(tmp_path)
    (tmp_path / ".kamal" / "secure.yml").write_text("hosts:\n  timeout: 0\n")
    with pytest.raises(ConfigError, match=r"hosts\.timeout"):  # the whole policy's schema
        policy_for(tmp_path)
    # one reader: a policy file that is a dangling link is an error, never the defaults
    (tmp_path / ".kamal" / "secure.yml").unlink()
    (tmp_path / ".kamal" / "secure.yml").symlink_to(tmp_path / "nowhere.yml")
    with pytest.raises(ConfigError):
        policy_for(tmp_path)


def test_the_files_trustedusercakeys_and_revokedkeys_name() -> None:
    """Read on the host: present with its keys, absent, or unreadable (never absent)."""
    main = FakeHost.files["/etc/ssh/sshd_config"]

    class Host(FakeHost):
        files: ClassVar[dict[str, str]] = {
            **FakeHost.files,
            "/etc/ssh/sshd_config": main + "TrustedUserCAKeys /etc/ssh/ca.pub\n"
                                           "RevokedKeys /etc/ssh/revoked_keys\n",
            "/etc/ssh/ca.pub": f"ssh-ed25519 {KEY} corp-ca\n"}

    facts = sshd.gather(Host(), "d")
    assert facts.trusted_ca is not None
    assert facts.trusted_ca.state == "ok"
    assert [k.comment for k in facts.trusted_ca.keys] == ["corp-ca"]
    assert facts.revoked_keys == HostFile("/etc/ssh/revoked_keys", "absent")

    class Locked(Host):
        unreadable: ClassVar[set[str]] = {"/etc/ssh/ca.pub", "/etc/ssh/revoked_keys"}

    facts = sshd.gather(Locked(), "d")
    assert facts.trusted_ca == HostFile("/etc/ssh/ca.pub", "unreadable")
    assert facts.revoked_keys == HostFile("/etc/ssh/revoked_keys", "unreadable")
    unset = sshd.gather(FakeHost(), "d")
    assert (unset.trusted_ca, unset.revoked_keys) == (None, None)
    tokens = SshdConfig.parse("trustedusercakeys /etc/ssh/ca/%u.pub\nrevokedkeys none\n")
    assert sshd.named_file(Host(), tokens, "trustedusercakeys") == HostFile(
        "/etc/ssh/ca/%u.pub", "unreadable")
    assert sshd.named_file(Host(), tokens, "revokedkeys") is None


class AsNobody:
    """Runs the remote scripts here, as an unprivileged user (what a deploy user sees)."""

    def run(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               *argv], input=stdin, capture_output=True, check=False)
        return done.returncode, done.stdout.decode()


def test_a_file_behind_a_closed_directory_is_unreadable_not_absent() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as name:  # pytest's tmp_path is 0700 above
        base = Path(name)
        base.chmod(0o755)
        _read_as_nobody(base)


def _read_as_nobody(base: Path) -> None:
    open_dir, closed = base / "open", base / "closed"
    open_dir.mkdir(mode=0o755)
    closed.mkdir(mode=0o700)
    (open_dir / "present").write_text("ssh-ed25519 AAAA x\n")
    (open_dir / "present").chmod(0o644)
    (closed / "present").write_text("secret\n")
    runner = AsNobody()
    assert sshd.read_state(runner, str(open_dir / "present")) == ("ok", "ssh-ed25519 AAAA x")
    assert sshd.read_state(runner, str(open_dir / "gone")) == ("absent", "")
    assert sshd.read_state(runner, str(open_dir / "no" / "such" / "dir")) == ("absent", "")
    assert sshd.read_state(runner, str(closed / "present")) == ("unreadable", "")
    assert sshd.read_state(runner, str(closed / "gone")) == ("unreadable", "")
    assert sshd.read_state(runner, str(closed / "sub" / "gone")) == ("unreadable", "")
    assert sshd.read_state(runner, "relative/gone") in (("absent", ""), ("unreadable", ""))
