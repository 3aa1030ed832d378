"""`helm lint --strict` and `helm template` for every value set, and the schema's refusals."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import CHART, render, rendered, values_of


def test_helm_lint_strict_passes(value_set: str) -> None:
    helm = pytest.importorskip("helm_python")
    report = helm.lint(CHART, values_of(value_set), strict=True, namespace="sluice")
    assert report["messages"] == [], report
    assert report["total_charts_linted"] == 1


def test_every_value_set_renders_named_objects(value_set: str) -> None:
    manifests = rendered(value_set)
    assert {m.kind for m in manifests} >= {"Deployment", "Service", "ConfigMap"}
    names = [(m.kind, m.name) for m in manifests]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api": {"workers": 0}}, "/api/workers"),
        ({"api": {"port": "8000"}}, "/api/port"),
        ({"settings": {"SLUICE_PORT": "9000"}}, "SLUICE_PORT"),
        ({"settings": {"DATABASE_URL": "postgresql://x"}}, "DATABASE_URL"),
        ({"secrets": {"databaseUrl": {"name": "", "key": "url"}}}, "/secrets/databaseUrl/name"),
        ({"environment": "prod"}, "/environment"),
        ({"maintenance": {"enabled": True, "schedule": "hourly"}}, "/maintenance/schedule"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled"),
        ({"replicas": 3}, "replicas"),
    ],
)
def test_the_schema_refuses_wrong_values_at_install(values: dict[str, Any], message: str) -> None:
    helm = pytest.importorskip("helm_python")
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)
