"""The alerts and dashboards the chart ships (files/) name only metrics the app exports,
and the alerts are a valid Prometheus rules file (promtool, Debian's `prometheus`)."""

from __future__ import annotations

import json
import re
import subprocess

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import app.observability.metrics  # noqa: F401 - registers every sluice_* metric
from tests.chart.conftest import CHART
from tests.tooling import require_tool

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
# Series Prometheus itself adds to every target.
_SCRAPE_SERIES = {"up"}


def exported_series() -> set[str]:
    """Every series name the app's registry can expose, from the metric objects."""
    families: list[Metric] = list(REGISTRY.collect())
    return {
        family.name + suffix
        for family in families
        if family.name.startswith("sluice_")
        for suffix in _SUFFIXES.get(family.type, ("",))
    }


def series_in(expression: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers followed by `{`, `[`, `)`
    or the end that are not functions, keywords or label names."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expression)
    without_by = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_labels)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", without_by))
    return {n for n in names if n.startswith("sluice_") or n in _SCRAPE_SERIES}


def _alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_alert_and_panel_names_an_exported_metric() -> None:
    exported = exported_series() | _SCRAPE_SERIES
    for expression in _alert_expressions() + _dashboard_expressions():
        named = series_in(expression)
        assert named, f"no metric in {expression!r}"
        assert named <= exported, f"{named - exported} in {expression!r} is not exported"


def test_the_metric_checker_sees_a_wrong_name() -> None:
    assert series_in("sum(rate(sluice_events_stord_total[5m]))") - exported_series()


def test_alerts_are_a_valid_rules_file() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(  # noqa: S603 - promtool checking our own rules
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
