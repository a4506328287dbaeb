from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamal_secure.config.inventory import (
    HOST_NAME,
    USER_NAME,
    Jump,
    build_inventory,
    match_items,
    parse_jump,
)
from kamal_secure.config.load import load_project
from kamal_secure.errors import ConfigError, UsageError

DEPLOY = """\
service: shop
servers:
  web:
    - 10.0.0.1
    - 10.0.0.2: [edge, eu]
  workers:
    hosts:
      - 10.0.0.3
      - 10.0.0.1
accessories:
  db:
    host: 10.0.0.9
  cache:
    role: workers
  search:
    tags: [edge]
  redis:
    hosts: [10.0.0.10, 10.0.0.9]
ssh:
  user: deploy
  port: 2222
  proxy: bastion.example.com:2200
  keys: ["~/.ssh/kamal_deploy_key"]
  keys_only: true
  config: false
"""


def project(tmp_path: Path, text: str = DEPLOY, dest: str | None = None):  # type: ignore[no-untyped-def]
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "deploy.yml").write_text(text)
    return load_project(destination=dest, root=tmp_path)


def test_every_host_once_with_its_line(tmp_path: Path) -> None:
    inv = build_inventory(project(tmp_path))
    got = [(t.name, t.origin.line, t.roles) for t in inv.targets]
    assert got == [
        ("10.0.0.1", 4, ("web", "workers")),
        ("10.0.0.2", 5, ("web",)),
        ("10.0.0.3", 8, ("workers",)),
        ("10.0.0.9", 12, ()),
        ("10.0.0.10", 18, ()),
    ]
    assert inv.targets[0].origin.file == "config/deploy.yml"


def test_ssh_settings(tmp_path: Path) -> None:
    ssh = build_inventory(project(tmp_path)).ssh
    assert (ssh.user, ssh.port, ssh.keys_only, ssh.config_files) == ("deploy", 2222, True, ())
    assert ssh.proxy == Jump("root", "bastion.example.com", 2200)
    assert ssh.keys == ("~/.ssh/kamal_deploy_key",)


def test_defaults_like_kamal(tmp_path: Path) -> None:
    inv = build_inventory(project(tmp_path, "servers: [a.example, b.example]\n"))
    assert [t.name for t in inv.targets] == ["a.example", "b.example"]
    assert [t.roles for t in inv.targets] == [("web",), ("web",)]
    ssh = inv.ssh
    assert (ssh.user, ssh.port, ssh.proxy, ssh.keys_only) == ("root", 22, None, False)
    assert ssh.config_files == ("~/.ssh/config", "/etc/ssh_config", "/etc/ssh/ssh_config")


def test_hosts_filter_with_wildcards(tmp_path: Path) -> None:
    inv = build_inventory(project(tmp_path), hosts=["10.0.0.1*"])
    assert [t.name for t in inv.targets] == ["10.0.0.1", "10.0.0.10"]
    inv = build_inventory(project(tmp_path), hosts=["10.0.0.{2,3}"])
    assert [t.name for t in inv.targets] == ["10.0.0.2", "10.0.0.3"]


def test_roles_filter_drops_accessory_only_hosts(tmp_path: Path) -> None:
    inv = build_inventory(project(tmp_path), roles=["work*"])
    assert [t.name for t in inv.targets] == ["10.0.0.1", "10.0.0.3"]


def test_hosts_and_roles_filters_combine(tmp_path: Path) -> None:
    inv = build_inventory(project(tmp_path), hosts=["10.0.0.1", "10.0.0.2"], roles=["web"])
    assert [t.name for t in inv.targets] == ["10.0.0.1", "10.0.0.2"]


def test_no_match_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No --hosts match"):
        build_inventory(project(tmp_path), hosts=["192.*"])
    with pytest.raises(UsageError, match="No --roles match"):
        build_inventory(project(tmp_path), roles=["db"])


def test_destination_replaces_servers(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "config" / "deploy.staging.yml").write_text("servers:\n  web: [10.9.9.9]\n")
    inv = build_inventory(load_project(destination="staging", root=tmp_path))
    names = [t.name for t in inv.targets]
    assert names[0] == "10.9.9.9"
    assert inv.targets[0].origin.file == "config/deploy.staging.yml"


def test_unknown_accessory_role(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown role"):
        build_inventory(project(tmp_path, "servers: [a]\naccessories:\n  db:\n    role: x\n"))


@pytest.mark.parametrize(
    ("text", "jump"),
    [("bastion", Jump("root", "bastion", 22)), ("ops@bastion:2200", Jump("ops", "bastion", 2200)),
     ("ops@[2001:db8::1]:22", Jump("ops", "2001:db8::1", 22))],
)
def test_parse_jump(text: str, jump: Jump) -> None:
    assert parse_jump(text) == jump


def test_bad_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        build_inventory(project(tmp_path, "servers: [a]\nssh:\n  port: '22; rm -rf /'\n"))


def test_match_items_keeps_order() -> None:
    assert match_items(["b*", "a"], ["a", "b1", "b2"]) == ["b1", "b2", "a"]


def test_match_items_is_ruby_fnmatch() -> None:
    """Kamal matches -h/-r with File.fnmatch (FNM_EXTGLOB), not Python's fnmatch: `[^x]`
    negates, a backslash escapes, braces nest, an unclosed brace matches nothing, a
    leading dot needs a literal dot."""
    hosts = ["web1", "web2", "web*", ".web", "db{1"]
    assert match_items(["web[^1]"], hosts) == ["web2", "web*"]
    assert match_items(["web\\*"], hosts) == ["web*"]
    assert match_items(["web{1,{2,3}}"], hosts) == ["web1", "web2"]
    assert match_items(["db{1"], hosts) == []
    assert match_items(["*web"], hosts) == []
    assert match_items(["\\.web"], hosts) == [".web"]


@pytest.mark.parametrize("host", ["-oProxyCommand=touch x", "a b", "a;b", "$(id)", "a\nb"])
def test_hostile_host_names_are_refused(tmp_path: Path, host: str) -> None:
    text = f"servers:\n  - {json.dumps(host)}\n"
    with pytest.raises(ConfigError, match="not a host name"):
        build_inventory(project(tmp_path, text))


@pytest.mark.parametrize("user", ["deploy,addr=10.0.0.1", "a b", "; rm -rf /", "$(id)", "-x"])
def test_hostile_user_is_refused(tmp_path: Path, user: str) -> None:
    text = f"servers: [a]\nssh:\n  user: {json.dumps(user)}\n"
    with pytest.raises(ConfigError, match="not a user name"):
        build_inventory(project(tmp_path, text))


def test_ipv6_and_names_are_fine(tmp_path: Path) -> None:
    inv = build_inventory(project(tmp_path, "servers: ['2001:db8::1', web-1.example.com]\n"))
    assert [t.name for t in inv.targets] == ["2001:db8::1", "web-1.example.com"]


def test_erb_hosts_are_kept_and_labelled(tmp_path: Path) -> None:
    text = 'servers:\n  - <%= ENV["WEB"] %>\n  - 10.0.0.1\nssh:\n  user: <%= ENV["U"] %>\n'
    inv = build_inventory(project(tmp_path, text))
    assert [t.dynamic for t in inv.targets] == [True, False]
    assert inv.targets[0].label == "<ERB at config/deploy.yml:2>"


@given(st.text(max_size=30))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_host_value_is_refused_or_a_plain_name(tmp_path: Path, host: str) -> None:
    text = f"servers:\n  - {json.dumps(host)}\nssh:\n  user: {json.dumps(host)}\n"
    try:
        inv = build_inventory(project(tmp_path, text))
    except ConfigError:
        return
    for target in inv.targets:
        assert target.dynamic or HOST_NAME.fullmatch(target.name)
        assert not target.name.startswith("-")
    assert USER_NAME.fullmatch(inv.ssh.user) or "\ue000" in inv.ssh.user
