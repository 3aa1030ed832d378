"""The chart rendered offline by a real Helm (PyPI `helm-python-sdk` embeds Helm 4).

Every test renders the same value sets: the chart's defaults, `values-staging.yaml`,
`values-production.yaml`, and `ci/*-values.yaml` (every switch on; the consumer on a CPU
HPA with in-process upkeep). Renders are cached per session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import PROJECT_ROOT

CHART = PROJECT_ROOT / "charts" / "sluice"
RELEASE = "rel"
NAMESPACE = "sluice"
VALUE_FILES: dict[str, Path | None] = {
    "default": None,
    "staging": CHART / "values-staging.yaml",
    "production": CHART / "values-production.yaml",
    **{path.name.removesuffix("-values.yaml"): path for path in sorted(CHART.glob("ci/*.yaml"))},
}


@dataclass(frozen=True)
class Manifest:
    """One rendered object and the template it came from."""

    template: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def values_of(value_set: str) -> dict[str, Any]:
    path = VALUE_FILES[value_set]
    return {} if path is None else yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any], *, is_upgrade: bool = False) -> list[Manifest]:
    """`helm template` of the chart with `values`; raises Helm's error if it fails."""
    helm = pytest.importorskip("helm_python")
    chart = helm.Chart.load(CHART)
    try:
        files = chart.render(
            values,
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=not is_upgrade,
            is_upgrade=is_upgrade,
        )
    finally:
        chart.close()
    return [
        Manifest(template, body)
        for template, text in sorted(files.items())
        for body in yaml.safe_load_all(text)
        if body
    ]


@functools.cache
def rendered(value_set: str) -> tuple[Manifest, ...]:
    return tuple(render(values_of(value_set)))


def one(manifests: tuple[Manifest, ...] | list[Manifest], kind: str, name: str) -> Manifest:
    """The manifest of `kind` named `<release>-sluice-<name>` (or `<release>-sluice`)."""
    full = f"{RELEASE}-sluice-{name}" if name else f"{RELEASE}-sluice"
    found = [m for m in manifests if m.kind == kind and m.name == full]
    assert len(found) == 1, f"{kind} {full}: {len(found)} rendered"
    return found[0]


@pytest.fixture(params=sorted(VALUE_FILES))
def value_set(request: pytest.FixtureRequest) -> str:
    return str(request.param)
