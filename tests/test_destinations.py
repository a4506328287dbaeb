"""scan without -d: a base file that cannot be deployed alone is audited per destination."""

from __future__ import annotations

import json
from pathlib import Path

from testing.cli import Main
from testing.project import write_project

BASE = ("service: shop\nimage: acme/shop\nrequire_destination: true\n"
        "registry:\n  username: [U]\n  password: [P]\n"
        "accessories:\n  db:\n    image: postgres\n    host: 203.0.113.10\n")
STAGING = ("servers:\n  - 203.0.113.10\nssh:\n  user: deploy\n  forward_agent: false\n"
           "proxy:\n  host: staging.example.com\n  ssl: true\n")
PRODUCTION = "servers:\n  - 203.0.113.20\nproxy:\n  host: shop.example.com\n"


def _findings(main: Main, root: Path, *args: str) -> list[dict[str, object]]:
    run = main(["scan", "--offline", "--format", "json", *args], root)
    assert run.code in (0, 1), run.stderr
    return list(json.loads(run.stdout)["findings"])


def _where(findings: list[dict[str, object]], rule: str) -> set[tuple[object, object, str]]:
    return {(f["file"], f["line"], str(f["message"]).split("]", 1)[0] + "]")
            for f in findings if f["rule"] == rule}


def test_every_destination_is_audited_and_named(tmp_path: Path, main: Main) -> None:
    write_project(tmp_path, {"config/deploy.yml": BASE, "config/deploy.staging.yml": STAGING,
                             "config/deploy.production.yml": PRODUCTION})
    found = _findings(main, tmp_path)
    assert all(str(f["message"]).startswith("[-d ") for f in found)
    # staging sets ssh.user: deploy, production sets no ssh at all (Kamal: root): the one
    # grouped finding for a missing ssh section (KS100), at the base file
    assert _where(found, "KS100") == {("config/deploy.yml", 1, "[-d production]")}
    # production's proxy has no ssl, staging's has; the finding is in production's file
    assert _where(found, "KS404") == {("config/deploy.production.yml", 3, "[-d production]")}
    # a fact about the base that holds for both destinations is listed once, naming both
    assert _where(found, "KS310") == {("config/deploy.yml", 9, "[-d production, -d staging]")}
    assert not any(f["rule"] == "KS520" for f in found)


def test_a_base_without_hosts_is_not_audited_alone(tmp_path: Path, main: Main) -> None:
    base = BASE.replace("require_destination: true\n", "")
    write_project(tmp_path, {"config/deploy.yml": base, "config/deploy.staging.yml": STAGING})
    found = _findings(main, tmp_path)
    assert {f["rule"] for f in found} >= {"KS520", "KS310"}
    assert all(str(f["message"]).startswith("[-d staging] ") for f in found)


def test_explicit_destination_and_deployable_base_are_unchanged(tmp_path: Path, main: Main) -> None:
    write_project(tmp_path, {"config/deploy.yml": BASE, "config/deploy.staging.yml": STAGING,
                             "config/deploy.production.yml": PRODUCTION})
    found = _findings(main, tmp_path, "-d", "staging")
    assert found
    assert not any(str(f["message"]).startswith("[") for f in found)
    assert not any(f["rule"] in ("KS103", "KS404") for f in found)
    deployable = BASE.replace("require_destination: true\n", "servers:\n  - 203.0.113.5\n")
    write_project(tmp_path, {"config/deploy.yml": deployable})
    found = _findings(main, tmp_path)
    assert _where(found, "KS100") == {("config/deploy.yml", 1, "no ssh section: Kamal logs in "
                                       "as root, offers every key it finds and forwards "
                                       "your agent]")}


def test_an_empty_base_is_audited_through_its_destinations(tmp_path: Path, main: Main) -> None:
    write_project(tmp_path, {"config/deploy.yml": "--- {}\n",
                             "config/deploy.staging.yml": BASE + STAGING,
                             "config/deploy.production.yml": BASE.replace(
                                 "require_destination: true\n", "") + PRODUCTION})
    found = _findings(main, tmp_path)
    assert _where(found, "KS100") == {("config/deploy.yml", 1, "[-d production]")}
