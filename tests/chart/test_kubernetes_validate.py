"""Every rendered manifest validates strictly: Kubernetes' own kinds with
`kubernetes-validate --strict` against the schemas of each supported version, the CRDs
(KEDA, prometheus-operator) against their schemas vendored in `crd-schemas/`."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.chart.conftest import CHART, rendered
from tests.support import PROJECT_ROOT
from tests.tooling import CACHE, require_tool

SCHEMAS = PROJECT_ROOT / "tests" / "chart" / "crd-schemas"

# The chart's `kubeVersion` floor, a middle release and the newest kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.27.0", "1.31.0", "1.37.0")


def file_of(api_version: str, kind: str) -> Path:
    """The vendored schema of a custom resource (named as deploy/crd_schemas.py writes it)."""
    return SCHEMAS / f"{kind.lower()}-{api_version.replace('/', '_')}.json"


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(file_of(api_version, kind).read_text()))


def test_the_supported_versions_are_the_charts() -> None:
    chart = (CHART / "Chart.yaml").read_text()
    assert f'kubeVersion: ">={KUBERNETES_VERSIONS[0]}-0"' in chart


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_validate_strictly(value_set: str, version: str) -> None:
    validate = pytest.importorskip("kubernetes_validate.utils")
    for manifest in rendered(value_set):
        if file_of(manifest.body["apiVersion"], manifest.kind).exists():
            continue  # a custom resource: below
        try:
            validate.validate(manifest.body, version, strict=True)
        except validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(
                f"{manifest.template}: {manifest.kind} {manifest.name}: {path}: {exc.message}"
            )
        except validate.SchemaNotFoundError as exc:
            pytest.fail(f"{manifest.template}: {exc.message}")


def test_custom_resources_validate_against_their_vendored_schemas(value_set: str) -> None:
    for manifest in rendered(value_set):
        body: dict[str, Any] = manifest.body
        if not file_of(body["apiVersion"], manifest.kind).exists():
            continue
        errors = [
            f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in _crd_validator(body["apiVersion"], manifest.kind).iter_errors(body)
        ]
        assert not errors, f"{manifest.kind} {manifest.name}: {errors}"


def test_every_custom_resource_the_chart_can_render_has_a_schema() -> None:
    kinds = {(m.body["apiVersion"], m.kind) for m in rendered("all-on")}
    custom = {k for k in kinds if "." in k[0].split("/")[0] and not k[0].endswith(".k8s.io/v1")}
    assert custom == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
    assert all(file_of(*kind).exists() for kind in custom)


def test_the_vendored_schemas_are_what_the_pinned_models_generate(tmp_path: Path) -> None:
    """`make crd-schemas` after changing the models' pins in .ci/tools-k8s.sh."""
    python = require_tool("python", where=CACHE / "crd-models-venv" / "bin")
    script = str(PROJECT_ROOT / "deploy" / "crd_schemas.py")
    subprocess.run([python, script, str(tmp_path)], check=True, timeout=120)  # noqa: S603
    fresh = {path.name: path.read_text() for path in tmp_path.iterdir()}
    vendored = {path.name: path.read_text() for path in SCHEMAS.iterdir()}
    assert fresh == vendored, "tests/chart/crd-schemas is stale: run make crd-schemas"


def test_a_misspelt_field_in_a_custom_resource_is_caught() -> None:
    (scaled,) = (m for m in rendered("all-on") if m.kind == "ScaledObject")
    wrong = json.loads(json.dumps(scaled.body))
    wrong["spec"]["scaleTargetRef"]["nmae"] = wrong["spec"]["scaleTargetRef"].pop("name")
    assert not _crd_validator(wrong["apiVersion"], "ScaledObject").is_valid(wrong)
