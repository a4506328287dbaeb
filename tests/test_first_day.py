"""First-day messages: fixes filled from the finding's own values, the YAML path a waiver
needs in text output, unmatched waivers pointing at the nearest path, `doctor`'s plan."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from testing.cli import Main
from testing.project import scan, write_project
from testing.standin import run_ks

SSH = ("ssh:\n  user: deploy\n  keys: [\"~/.ssh/k\"]\n  keys_only: true\n"
       "  forward_agent: false\n")

OFFLINE = {"KAMAL_SECURE_OFFLINE": "1"}


def _by_rule(root: Path, config: str) -> dict[str, list[tuple[str, str, str]]]:
    write_project(root, {"config/deploy.yml": config})
    out: dict[str, list[tuple[str, str, str]]] = {}
    for f in scan(root):
        out.setdefault(f.rule, []).append((f.location.path or "", f.fix or "",
                                           f.severity.label))
    return out


def test_fixes_name_the_config_values(tmp_path: Path) -> None:
    config = ("service: mc\nimage: acme/mc\nservers:\n  game:\n    hosts: [203.0.113.10]\n"
              "    options:\n      publish: \"25565:25565\"\n  cache:\n"
              "    hosts: [203.0.113.11]\n    options:\n      publish: \"6379:6379\"\n"
              "accessories:\n  queue:\n    image: rabbitmq:latest\n    host: 203.0.113.10\n"
              + SSH)
    found = _by_rule(tmp_path, config)
    publish = dict((p, (fix, sev)) for p, fix, sev in found["KS402"])
    game_fix, game_sev = publish["servers.game.options.publish"]
    assert '"127.0.0.1:25565:25565"' in game_fix
    assert "9394" not in game_fix
    assert "waiver" in game_fix
    assert game_sev == "medium"
    cache_fix, cache_sev = publish["servers.cache.options.publish"]
    assert '"127.0.0.1:6379:6379"' in cache_fix
    assert cache_sev == "high"
    [(path, fix, _)] = found["KS310"]
    assert path == "accessories.queue.image"
    assert "rabbitmq:VERSION" in fix
    assert "postgres" not in fix


def test_text_shows_the_waiver_path_and_never_repeats_it(tmp_path: Path, main: Main) -> None:
    config = "service: s\nimage: i\nservers: [203.0.113.10]\nregistry:\n  username: acme\n" + SSH
    write_project(tmp_path, {"config/deploy.yml": config})
    run = main(["scan", "--offline", "--fail-on", "low"], tmp_path, OFFLINE)
    line = next(ln for ln in run.stdout.splitlines() if "KS202" in ln)
    assert line.endswith("path: registry.username")
    assert "registry.username: registry.username" not in run.stdout
    data = json.loads(main(["scan", "--offline", "--format", "json"], tmp_path, OFFLINE).stdout)
    message = next(f["message"] for f in data["findings"] if f["rule"] == "KS202")
    assert message.count("registry.username") == 1


def test_unmatched_waiver_suggests_the_nearest_path(tmp_path: Path, main: Main) -> None:
    config = "service: s\nimage: i\nservers: [203.0.113.10]\nssh:\n  user: root\n"
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    policy = ("waivers:\n  - rule: KS103\n    path: ssh.usr\n    reason: one box\n"
              f"    expires: {soon}\n    owner: ops\n")
    write_project(tmp_path, {"config/deploy.yml": config, ".kamal/secure.yml": policy})
    run = main(["scan", "--offline", "--fail-on", "low"], tmp_path, OFFLINE)
    assert "waiver for KS103 matched no finding" in run.stdout
    assert "did you mean `path: ssh.user`?" in run.stdout


def test_doctor_plans_the_path_to_green_in_order(tmp_path: Path, main: Main) -> None:
    config = ("service: s\nimage: i\nservers: [203.0.113.10]\naccessories:\n  db:\n"
              "    image: postgres:16.4\n    host: 203.0.113.10\n    port: 5432\n")
    write_project(tmp_path, {"config/deploy.yml": config})
    run = main(["doctor", "--offline"], tmp_path, OFFLINE)
    assert run.code == 0, run.stderr
    out = run.stdout
    order = ["keygen --write-config --user deploy", "useradd", "kamal-secure authorize",
             "kamal-secure harden", "kamal-secure pin-hosts", "accessories.db.port",
             "kamal-secure scan"]
    positions = [out.index(step) for step in order]
    assert positions == sorted(positions), out
    assert "sudo on every host" in out


def test_help_lists_every_variable_and_scan_says_it_connects(tmp_path: Path, main: Main) -> None:
    import re

    from testing.cli import REPO

    used = set()
    for path in (REPO / "kamal_secure").rglob("*.py"):
        used |= set(re.findall(r"KAMAL_SECURE_[A-Z_]+", path.read_text()))
    used = {v for v in used if not v.startswith("KAMAL_SECURE_TEST_")}  # fault injection
    used.discard("KAMAL_SECURE_GUARD")  # set by us for our guard inside Kamal, never by users
    shown = main(["--help"], tmp_path, OFFLINE).stdout
    assert {v for v in used if v not in shown} == set()
    scan_help = main(["scan", "--help"], tmp_path, OFFLINE).stdout
    assert "Connects to every host" in " ".join(scan_help.split())


def test_typo_of_our_command_is_caught_but_kamal_words_pass(tmp_path: Path) -> None:
    from testing.standin import write_standin

    standin = write_standin(tmp_path / "bin").parent
    write_project(tmp_path / "app", {})
    for typo, ours in (("scna", "scan"), ("explian", "explain"), ("doctr", "doctor"),
                       ("pin-host", "pin-hosts")):
        run = run_ks([typo], tmp_path / "app", [standin], tmp_path / "r.json")
        assert run.code == 2, run.stderr
        assert f"did you mean `{ours}`?" in run.stderr
        assert run.record is None  # kamal was not started
    for word in ("docs", "version", "secrets"):  # kamal's own words: straight through
        run = run_ks([word], tmp_path / "app", [standin], tmp_path / "r.json")
        assert run.argv == [word.encode()], run.stderr
    for word in ("doc", "ver", "conf"):  # prefixes: Kamal's to resolve, never a typo of ours
        run = run_ks([word], tmp_path / "app", [standin], tmp_path / "r.json")
        assert "did you mean" not in run.stderr, run.stderr


def test_sarif_describes_only_rules_with_results_and_no_dead_links(tmp_path: Path,
                                                                   main: Main) -> None:
    config = "service: s\nimage: i\nservers: [203.0.113.10]\n"
    write_project(tmp_path, {"config/deploy.yml": config})
    run = main(["scan", "--offline", "--format", "sarif"], tmp_path, OFFLINE)
    data = json.loads(run.stdout)
    driver = data["runs"][0]["tool"]["driver"]
    results = data["runs"][0]["results"]
    assert results, "this project has findings"
    assert {r["id"] for r in driver["rules"]} == {r["ruleId"] for r in results}
    assert all(driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    assert "helpUri" not in run.stdout
    assert "informationUri" not in run.stdout
    assert len(run.stdout) < 20_000


def test_explain_is_plain_markdown_when_piped_and_rendered_when_asked(tmp_path: Path) -> None:
    piped = run_ks(["explain", "KS104"], tmp_path, [], tmp_path / "r.json").stdout
    assert piped.startswith("# KS104")
    rendered = run_ks(["explain", "KS104", "--color"], tmp_path, [], tmp_path / "r.json",
                      env={"NO_COLOR": ""}).stdout
    assert "# KS104" not in rendered
    assert "KS104" in rendered
    assert "\x1b[" in rendered
