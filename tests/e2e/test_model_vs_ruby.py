"""Our own model of Kamal (used by `scan --offline`, pre-commit and CI without Ruby) against
the real thing: net-ssh's ssh_config reader from the e2e Kamal install, Psych and
File.fnmatch from the Ruby it runs on. Generated matrices; every cell must agree."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from kamal_secure.remote.ssh_config import SshConfigError, lookup
from testing.ruby import run_json

pytestmark = pytest.mark.e2e
SEED = int(os.environ.get("KS_MODEL_SEED", "11"))

NETSSH = r"""
require "json"
require "net/ssh"
require "net/ssh/proxy/command"
require "net/ssh/proxy/jump"
out = JSON.parse(STDIN.read).map do |c|
  begin
    r = Net::SSH::Config.for(c["host"], c["files"])
    proxy = case (p = r[:proxy])
            when nil then nil
            when Net::SSH::Proxy::Jump then ["proxyjump", p.jump_proxies]
            when Net::SSH::Proxy::Command then ["proxycommand", p.command_line_template]
            else ["other", p.class.name]
            end
    {"ok" => true, "host_name" => r[:host_name], "proxy" => proxy}
  rescue StandardError, SystemStackError => e
    {"ok" => false, "error" => e.class.name}
  end
end
puts JSON.dump(out)
"""

HOSTS = ("web", "WEB-1", "db", "db.internal")
PATTERNS = ("web", "web*", "*", "!db", "db*", "WEB-?", "*.internal", "d?", "web db",
            "!web *", "db.internal")
SETTINGS = ("HostName 10.0.0.{n}", "HostName %h.example", "HostName=alt{n}",
            'HostName "q{n}"', "ProxyCommand nc %h %p", "ProxyCommand none",
            "ProxyJump jump{n}", "Port 2{n}", "User u{n}", "IdentityFile ~/.ssh/k{n}",
            "HostName = spaced{n}", "hostname lower{n}")
MATCHES = ('Match exec "touch {marker}"', "Match host {pat}", "Match all",
           'Match host {pat} exec "touch {marker}"', "Match !host {pat}", "Match user root",
           "Match host {pat},db", "Match all host web")


def _block(rng: random.Random, marker: Path, n: int) -> list[str]:
    lines: list[str] = []
    kind = rng.random()
    if kind < 0.45:
        lines.append(f"Host {rng.choice(PATTERNS)}")
    elif kind < 0.8:
        lines.append(rng.choice(MATCHES).format(pat=rng.choice(PATTERNS).split()[0],
                                                marker=marker))
    for _ in range(rng.randint(0, 3)):
        lines.append("  " + rng.choice(SETTINGS).format(n=n + rng.randint(0, 9)))
    return lines


def _config(rng: random.Random, root: Path, marker: Path, index: int) -> list[str]:
    """A main file (maybe with globals and Includes of generated files) per case."""
    folder = root / f"c{index}"
    (folder / "inc").mkdir(parents=True)
    main: list[str] = []
    for _ in range(rng.randint(0, 2)):
        main.append(rng.choice(SETTINGS).format(n=rng.randint(0, 9)))
    for b in range(rng.randint(1, 4)):
        main.extend(_block(rng, marker, b * 10))
        if rng.random() < 0.35:
            inc = folder / "inc" / f"{b}.conf"
            inner = [line for _ in range(rng.randint(1, 2))
                     for line in _block(rng, marker, 50 + b)]
            inc.write_text("\n".join(inner) + "\n")
            main.append(rng.choice(["  Include inc/*.conf", f"Include {inc}",
                                    f"  Include inc/{b}.conf", '  Include "inc/nope.conf"']))
        if rng.random() < 0.15:
            main.append("# a comment\n")
    path = folder / "config"
    path.write_text("\n".join(main) + "\n")
    files = [str(path)]
    if rng.random() < 0.3:
        extra = folder / "second"
        extra.write_text("\n".join(_block(rng, marker, 90)) + "\n")
        files.append(str(extra))
    return files


def _ours(host: str, files: list[str]) -> dict[str, Any]:
    try:
        found = lookup(host, tuple(files))
    except SshConfigError:
        return {"ok": False}
    return {"ok": True, "host_name": found.hostname if found.hostname != host else None,
            "proxy": list(found.proxy) if found.proxy else None}


def test_ssh_config_matches_net_ssh(real_kamal: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    marker = tmp_path / "MATCH_EXEC_RAN"
    cases: list[dict[str, Any]] = []
    for index in range(400):
        files = _config(rng, tmp_path, marker, index)
        cases.extend({"host": host, "files": files} for host in HOSTS)
    theirs = run_json(NETSSH, cases, real_kamal)
    disagree = []
    for case, want in zip(cases, theirs, strict=True):
        got = _ours(case["host"], case["files"])
        if not want["ok"]:
            want = {"ok": False}
        elif want["host_name"] == case["host"]:
            want["host_name"] = None
        if got != want:
            text = Path(case["files"][0]).read_text()
            disagree.append((case["host"], text, want, got))
    assert not disagree, f"{len(disagree)} of {len(cases)} disagree; first: {disagree[0]}"
    assert not marker.exists(), "neither net-ssh nor we may run Match exec"
    kinds = {"HostName": sum(1 for w in theirs if w.get("host_name")),
             "proxy": sum(1 for w in theirs if w.get("proxy")),
             "error": sum(1 for w in theirs if not w["ok"])}
    assert all(kinds.values()), kinds  # the matrix exercises every outcome
    print(f"net-ssh ssh_config matrix: {len(cases)} cells agree {kinds}")


PSYCH = r"""
require "json"
require "yaml"
def conv(value, top)
  case value
  when Hash
    value.each_with_object({}) do |(k, v), out|
      key = k.is_a?(Symbol) ? (top ? k.to_s : ":#{k}") : k.to_s
      out[key] = conv(v, false)
    end
  when Array then value.map { |v| conv(v, false) }
  when Symbol then value.to_s
  else value
  end
end
out = JSON.parse(STDIN.read).map do |text|
  begin
    data = YAML.unsafe_load(text)
    data = data.transform_keys { |k| k.to_sym rescue k } if data.is_a?(Hash)
    {"ok" => true, "data" => conv(data, true)}
  rescue StandardError => e
    {"ok" => false, "error" => e.class.name}
  end
end
puts JSON.dump(out)
"""

KEYS = ("ssh", ":ssh", "servers", ":servers", "user", ":user", "a", ":'q x'", "<<", '"<<"',
        "!!str <<", "'<<'", "port")
SCALARS = ("1", "deploy", ":sym", "':quoted'", "true", "no", "~", '"x y"', ":\"s p\"", "2.5",
           "[A, B]", "{user: root}", "[]")


def _doc(rng: random.Random) -> str:
    anchors: list[str] = []
    lines: list[str] = []

    def value(depth: int) -> str:
        pick = rng.random()
        if anchors and pick < 0.3:
            return f"*{rng.choice(anchors)}"
        if depth < 2 and pick < 0.6:
            name = f"a{len(anchors)}"
            inner = ", ".join(f"{rng.choice(KEYS[:8] + KEYS[12:])}: {value(depth + 1)}"
                              for _ in range(rng.randint(1, 3)))
            anchors.append(name)
            return f"&{name} {{{inner}}}"
        if depth < 2 and pick < 0.7 and anchors:
            return f"[{', '.join('*' + rng.choice(anchors) for _ in range(2))}]"
        return rng.choice(SCALARS)

    for _ in range(rng.randint(1, 6)):
        lines.append(f"{rng.choice(KEYS)}: {value(0)}")
    return "\n".join(lines) + "\n"


def test_yaml_reads_like_psych(real_kamal: Path) -> None:
    from kamal_secure.config import yamlsafe
    from kamal_secure.errors import ConfigError

    rng = random.Random(SEED)
    docs = [_doc(rng) for _ in range(3000)]
    theirs = run_json(PSYCH, docs)
    disagree, merges, refused = [], 0, 0
    for text, want in zip(docs, theirs, strict=True):
        try:
            got: dict[str, Any] = {"ok": True, "data": yamlsafe.load(text, "t", ruby=True).data}
        except ConfigError:
            got = {"ok": False}
        if not want["ok"]:
            want = {"ok": False}
        if not got["ok"] and want["ok"]:
            refused += 1
            continue  # we refuse what Psych takes (a YAML error PyYAML is stricter on): safe
        merges += "<<" in text and want["ok"]
        if got != want:
            disagree.append((text, want, got))
    assert not disagree, f"{len(disagree)} of {len(docs)} disagree; first: {disagree[0]}"
    assert merges > 150
    assert refused < len(docs) // 10
    print(f"Psych matrix: {len(docs)} documents agree ({merges} with merge keys, "
          f"{refused} refused by us and read by Psych)")


FNMATCH = r"""
require "json"
cases = JSON.parse(STDIN.read)
puts JSON.dump(cases.map { |p, names| names.select { |n| File.fnmatch(p, n, File::FNM_EXTGLOB) } })
"""
GLOB_ATOMS = ("*", "?", "[^1]", "[!a-c]", "[a-c]", "[c-a]", "[]", "[!]", "[\\]]", "\\*", "\\",
              "{1,2}", "{a,{b,c}}", "{", "}", ",", ".", "web", "w", "1", "-", "[", "]", "\\.",
              "[.]", "{,x}", "^")
GLOB_NAMES = ("web1", "web2", "web*", "web", ".web", "w]", "w", "wa", "wb1", "x", "1", "w.1",
              "w-1", "web{1", "w\\", "^", "db.internal", "10.0.0.1", "web,1", "a", "b", "c")


def test_host_filters_match_like_file_fnmatch(real_kamal: Path) -> None:
    from kamal_secure.config.rubyglob import fnmatch

    rng = random.Random(SEED)
    cases = [("".join(rng.choice(GLOB_ATOMS) for _ in range(rng.randint(1, 5))),
              list(GLOB_NAMES)) for _ in range(4000)]
    theirs = run_json(FNMATCH, cases)
    disagree = [(pattern, want, [n for n in names if fnmatch(pattern, n)])
                for (pattern, names), want in zip(cases, theirs, strict=True)
                if want != [n for n in names if fnmatch(pattern, n)]]
    assert not disagree, f"{len(disagree)} of {len(cases)} disagree; first: {disagree[0]}"
    matched = sum(1 for want in theirs if want)
    assert matched > len(cases) // 8
    print(f"File.fnmatch matrix: {len(cases)} patterns x {len(GLOB_NAMES)} names agree "
          f"({matched} patterns match something)")
