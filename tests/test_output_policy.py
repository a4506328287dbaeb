"""Output formats (golden files, schema validation) and the policy: waivers, baseline."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from kamal_secure.report import github
from kamal_secure.report.model import Finding, Location, Report, Severity
from kamal_secure.resources import schema_text
from testing.cli import REPO, Main
from testing.standin import run_ks

SARIF_SCHEMA = REPO.parent / "shared" / "schemas" / "sarif-2.1.0.json"
GOLDEN = Path(__file__).parent / "golden"
SOON = (dt.date.today() + dt.timedelta(days=30)).isoformat()
PAST = (dt.date.today() - dt.timedelta(days=30)).isoformat()
FAR = (dt.date.today() + dt.timedelta(days=400)).isoformat()
FIXTURE = """\
service: shop
image: acme/shop
servers:
  web:
    - 127.0.0.1
ssh:
  user: root  # kamal-secure: ignore KS103 -- single-tenant box, OPS-7
  keys: ["~/.ssh/kamal_deploy_key"]
  # kamal-secure: ignore KS102
  keys_only: false
"""


def policy_text(expires: str, extra: str = "") -> str:
    return (f"fail_on: medium\nwaivers:\n  - rule: KS104\n    path: ssh\n"
            f"    reason: agent needed for git submodules\n    expires: {expires}\n"
            f"    owner: ops@example.com\n{extra}")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "config").mkdir(parents=True)
    (root / "config" / "deploy.yml").write_text(FIXTURE)
    return root


Scan = Callable[..., tuple[int, str, str]]


@pytest.fixture
def scan(main: Main) -> Scan:
    """``scan --offline ARGS`` in this process: exit code, stdout, stderr."""
    def run(app: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        done = main(["scan", "--offline", *args], app, {"KAMAL_SECURE_OFFLINE": "1", **(env or {})})
        return done.code, done.stdout, done.stderr
    return run


def sarif_validate(data: dict[str, object]) -> None:
    if not SARIF_SCHEMA.exists():
        assert os.environ.get("CI") != "true", f"{SARIF_SCHEMA} missing in CI"
        pytest.skip("shared/schemas not beside the checkout")
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(data)


def report_validate(data: dict[str, object]) -> None:
    schema = json.loads(schema_text("report.schema.json"))
    jsonschema.Draft202012Validator(schema).validate(data)


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} differs (UPDATE_GOLDEN=1 to accept)"


def _normalise(text: str, app: Path) -> str:
    return (text.replace(app.as_uri(), "file:///APP").replace('"0.1.0"', '"VERSION"')
            .replace(SOON, "EXPIRY"))


def test_golden_files_for_every_format(app: Path, scan: Scan) -> None:
    expires = SOON
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(policy_text(expires))
    outputs = {}
    for fmt in ("text", "json", "sarif", "github"):
        code, out, err = scan(app, "--format", fmt, "--show-suppressed")
        assert code == 1, err
        outputs[fmt] = _normalise(out, app)
    report_validate(json.loads(outputs["json"]))
    sarif = json.loads(outputs["sarif"])
    sarif_validate(sarif)
    _golden("report.txt", outputs["text"])
    _golden("report.json", outputs["json"])
    _golden("report.github", outputs["github"])
    _golden("report.sarif-results.json",
            json.dumps(sarif["runs"][0]["results"], indent=2, sort_keys=True) + "\n")


def test_sarif_rules_and_suppressions(app: Path, scan: Scan) -> None:
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(policy_text(SOON))
    _, out, _ = scan(app, "--format", "sarif")
    data = json.loads(out)
    sarif_validate(data)
    run = data["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    for rule in rules.values():
        assert rule["shortDescription"]["text"]
        assert rule["fullDescription"]["text"]
        assert rule["help"]["markdown"].startswith(f"# {rule['id']}")
        assert float(rule["properties"]["security-severity"]) >= 0
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert by_rule["KS103"]["suppressions"][0]["kind"] == "inSource"
    assert "OPS-7" in by_rule["KS103"]["suppressions"][0]["justification"]
    assert by_rule["KS104"]["suppressions"][0]["kind"] == "external"
    assert "suppressions" not in by_rule["KS102"]
    for result in run["results"]:
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
            "config/deploy.yml"
    again = json.loads(scan(app, "--format", "sarif")[1])
    assert [r["partialFingerprints"] for r in again["runs"][0]["results"]] == \
        [r["partialFingerprints"] for r in run["results"]]


def test_fingerprints_survive_line_shifts(app: Path, scan: Scan) -> None:
    first = json.loads(scan(app, "--format", "json")[1])
    (app / "config" / "deploy.yml").write_text("# a new comment\n\n" + FIXTURE)
    second = json.loads(scan(app, "--format", "json")[1])
    assert [f["fingerprint"] for f in first["findings"]] == \
        [f["fingerprint"] for f in second["findings"]]
    assert [f["line"] for f in first["findings"]] != [f["line"] for f in second["findings"]]


def test_inline_waivers(app: Path, scan: Scan) -> None:
    _, out, _ = scan(app, "--format", "json")
    data = json.loads(out)
    rules = {f["rule"]: f for f in data["findings"]}
    assert rules["KS103"]["suppressed"]["kind"] == "inSource"
    assert rules["KS102"]["suppressed"] is None  # no reason: not honoured
    assert rules["KS903"]["line"] == 9
    code, out, _ = scan(app, "--format", "json", "--no-inline-waivers")
    assert code == 1
    rules = {f["rule"]: f for f in json.loads(out)["findings"]}
    assert rules["KS103"]["suppressed"] is None
    assert "KS903" not in rules
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text("inline_waivers: false\n")
    rules = {f["rule"]: f for f in json.loads(scan(app, "--format", "json")[1])["findings"]}
    assert rules["KS103"]["suppressed"] is None


def test_expired_waiver_counts_again_and_says_so(app: Path, scan: Scan) -> None:
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(policy_text(PAST))
    code, out, _ = scan(app, "--format", "json")
    rules = {f["rule"]: f for f in json.loads(out)["findings"]}
    assert rules["KS104"]["suppressed"] is None
    assert f"expired on {PAST}" in rules["KS901"]["message"]
    assert rules["KS901"]["file"] == ".kamal/secure.yml"
    assert rules["KS901"]["line"] == 3
    assert code == 1


def test_unused_waiver_is_reported(app: Path, scan: Scan) -> None:
    extra = ("  - rule: KS101\n    reason: never matches anything\n"
             f"    expires: {SOON}\n    owner: me\n")
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(policy_text(SOON, extra))
    _, out, _ = scan(app, "--format", "json")
    unused = [f for f in json.loads(out)["findings"] if f["rule"] == "KS902"]
    assert len(unused) == 1
    assert "KS101" in unused[0]["message"]
    assert unused[0]["line"] == 8


@pytest.mark.parametrize(("policy", "message"), [
    ("waivers:\n  - rule: KS104\n    expires: " + SOON + "\n    owner: me\n",
     ".kamal/secure.yml:2: waivers.0: missing required key reason"),
    ("waivers:\n  - rule: KS104\n    reason: because\n    owner: me\n",
     "missing required key expires"),
    ("waivers:\n  - rule: KS999\n    reason: because\n    expires: " + SOON + "\n    owner: me\n",
     ".kamal/secure.yml:2: waivers[0]: no such rule KS999"),
    ("waivers:\n  - rule: KS104\n    reason: because\n    expires: " + FAR + "\n    owner: me\n",
     "more than one year ahead"),
    ("fail_on: severe\n", ".kamal/secure.yml:1: fail_on: must be one of"),
    ("rules:\n  KS998: {enabled: false}\n", ".kamal/secure.yml:2: rules.KS998: no such rule"),
    ("- a list\n", "(top level): must be a mapping"),
    ("certificates:\n  validity: 0\n", ".kamal/secure.yml:2: certificates.validity: "),
    ("certificates:\n  lifetime: 10\n", ".kamal/secure.yml:1: certificates: "),
    ("certificates:\n  validity: 10\n  minimum: 10\n",
     ".kamal/secure.yml:3: certificates: minimum (10 minutes) must be less than validity"),
    ("certificates:\n  minimum: 20\n", "minimum (20 minutes) must be less than validity (15"),
    ("certificates:\n  source_address: [10.0.0.0/8, 'a,b']\n",
     ".kamal/secure.yml:2: certificates.source_address[1]: 'a,b' is not an address"),
])
def test_bad_policy_is_exit_2_naming_the_line(app: Path, policy: str, message: str,
                                              scan: Scan) -> None:
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(policy)
    code, _, err = scan(app)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_rule_switches_and_severity_overrides(app: Path, scan: Scan) -> None:
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(
        "inline_waivers: false\nrules:\n  KS103: {enabled: false}\n  KS104: {severity: low}\n"
        "  KS102: {severity: critical}\n")
    rules = {f["rule"]: f for f in json.loads(scan(app, "--format", "json")[1])["findings"]}
    assert "KS103" not in rules
    assert rules["KS104"]["severity"] == "low"
    assert rules["KS102"]["severity"] == "critical"


def test_thresholds_soft_fail_and_report_on(app: Path, scan: Scan) -> None:
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text("fail_on: critical\nreport_on: high\n")
    code, out, _ = scan(app, "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert data["findings"], "the fixture has findings at high and below"
    assert all(f["severity"] in ("high", "critical") or f["suppressed"]
               for f in data["findings"])
    assert scan(app, "--fail-on", "high")[0] == 1
    assert scan(app, "--fail-on", "high", "--soft-fail")[0] == 0


def test_baseline_round_trip(app: Path, scan: Scan) -> None:
    base = app / "baseline.json"
    code, out, _ = scan(app, "--write-baseline", str(base))
    assert code == 0
    assert "wrote" in out
    assert scan(app, "--baseline", str(base))[0] == 0
    text = (app / "config" / "deploy.yml").read_text()
    (app / "config" / "deploy.yml").write_text(text + "  forward_agent: true\n")
    code, out, _ = scan(app, "--baseline", str(base), "--format", "json")
    data = json.loads(out)
    assert code == 1
    new = [f for f in data["findings"] if not f["in_baseline"] and not f["suppressed"]]
    assert [f["rule"] for f in new] == ["KS104"]
    (app / "bad.json").write_text("{}")
    assert scan(app, "--baseline", str(app / "bad.json"))[0] == 2


def test_several_formats_in_one_run(app: Path, scan: Scan) -> None:
    code, out, err = scan(app, "--format", "sarif", "--output", str(app / "r.sarif"),
                          "--format", "json", "--output", str(app / "r.json"))
    assert code == 1, err
    assert "KS104" in out  # text still on the terminal
    sarif_validate(json.loads((app / "r.sarif").read_text()))
    report_validate(json.loads((app / "r.json").read_text()))
    assert scan(app, "--format", "json", "--format", "sarif")[0] == 2


def test_github_escaping() -> None:
    finding = Finding("KS101", Severity.HIGH, "a, b: c", "50% done\nnext line",
                      Location(file="config/a,b.yml", line=3, column=2))
    out = github.render(Report(findings=[finding]))
    assert out == ("::error file=config/a%2Cb.yml,line=3,col=2,title=KS101 a%2C b%3A c::"
                   "HIGH: 50%25 done%0Anext line\n")


def test_init_policy_writes_a_valid_file_once(tmp_path: Path) -> None:
    rec = tmp_path / "rec.json"
    run = run_ks(["init-policy"], tmp_path, [], rec)
    assert run.code == 0
    policy = tmp_path / ".kamal" / "secure.yml"
    assert "waivers" in policy.read_text()
    again = run_ks(["init-policy"], tmp_path, [], rec)
    assert again.code == 2
    assert "exists already" in again.stderr


def test_gate_reads_the_policy(app: Path, standin_dir: Path, record: Path) -> None:
    (app / "config" / "deploy.yml").write_text(FIXTURE.replace("user: root", "user: deploy"))
    assert run_ks(["deploy"], app, [standin_dir], record).code == 1
    (app / ".kamal").mkdir()
    (app / ".kamal" / "secure.yml").write_text(
        policy_text((dt.date.today() + dt.timedelta(days=30)).isoformat()))
    run = run_ks(["deploy"], app, [standin_dir], record)
    assert run.code == 1  # fail_on: medium catches KS102
    (app / ".kamal" / "secure.yml").write_text(
        policy_text((dt.date.today() + dt.timedelta(days=30)).isoformat()).replace(
            "fail_on: medium", "fail_on: critical"))
    run = run_ks(["deploy"], app, [standin_dir], record)
    assert run.code == 0, run.stderr
    assert run.argv == [b"deploy"]


def test_pre_commit_hook_matches_the_right_files() -> None:
    import re

    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    pattern = re.compile(hooks[0]["files"])
    for name in ("config/deploy.yml", "config/deploy.staging.yml", ".kamal/secrets",
                 ".kamal/secrets-common", "app/config/deploy.yaml"):
        assert pattern.search(name), name
    for name in ("config/database.yml", "README.md", ".kamal/hooks/pre-deploy"):
        assert not pattern.search(name), name
    assert hooks[0]["entry"].split()[:2] == ["kamal-secure", "scan"]


def test_an_incomplete_check_names_its_rule_in_json_and_sarif() -> None:
    from kamal_secure.report import jsonfmt, sarif
    from kamal_secure.report.model import Problem, Report, Severity

    report = Report(problems=[Problem("KS801 Host unreachable or not answering",
                                      "cannot connect: timed out", "web-1", rule="KS801"),
                              Problem("KS722 unknown", "sshd -T could not run", "web-2",
                                      rule="KS722")])
    data = sarif.as_dict(report, "file:///app/")
    sarif_validate(data)
    run = data["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["associatedRule"]["id"] for n in notes] == ["KS801", "KS722"]
    assert [rules[n["associatedRule"]["index"]] for n in notes] == ["KS801", "KS722"]
    assert run["invocations"][0]["executionSuccessful"] is False
    as_json = json.loads(jsonfmt.render(report, Severity.HIGH, 3))
    report_validate(as_json)
    assert [p["rule"] for p in as_json["problems"]] == ["KS801", "KS722"]
