"""Acceptance 2 (alerts): the one rules file passes `promtool check rules`, and its unit
tests (input series for every alert, firing and not firing) pass `promtool test rules`."""

from __future__ import annotations

import subprocess

import yaml

from tests.observability.agents import tool
from tests.support import PROJECT_ROOT

RULES = PROJECT_ROOT / "charts" / "sluice" / "files" / "alerts.yaml"
TESTS = PROJECT_ROOT / "deploy" / "prometheus" / "tests" / "alerts_test.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the real promtool on our own files
        [tool("promtool"), *args], capture_output=True, text=True, check=False
    )


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_in_its_unit_test() -> None:
    result = _promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    cases = [
        case
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert firing == alerts
    assert quiet == alerts


def test_every_alert_links_its_runbook_section() -> None:
    runbook = (PROJECT_ROOT / "docs" / "runbook.md").read_text()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert f'<a id="{anchor}"></a>' in runbook, rule["alert"]
