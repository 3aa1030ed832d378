"""Write the JSON Schemas of the custom resources the chart renders (tests/chart/crd-schemas/).

kubernetes-validate knows only Kubernetes' own kinds. The CRDs' schemas come from
`cloudcoil-models-*` (PyPI): pydantic models generated from the published KEDA and
prometheus-operator CRDs, installed by `make tools-k8s` in a venv of their own (their
pytest plugin and pins stay out of the project's). Like the API server's strict field
validation, an object may not carry a field its schema does not name.

Usage: python deploy/crd_schemas.py DIRECTORY   (`make crd-schemas`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

MODELS: dict[tuple[str, str], Any] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
}


def file_name(api_version: str, kind: str) -> str:
    """`scaledobject-keda.sh_v1alpha1.json`: the name tests/chart looks a schema up by."""
    return f"{kind.lower()}-{api_version.replace('/', '_')}.json"


def _strict(node: Any) -> Any:
    """Every object with named properties refuses others."""
    if isinstance(node, dict):
        strict = {key: _strict(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            strict["additionalProperties"] = False
        return strict
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def main(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for (api_version, kind), model in MODELS.items():
        schema = _strict(model.model_json_schema(by_alias=True, mode="validation"))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        text = json.dumps(schema, indent=1, sort_keys=True) + "\n"
        (directory / file_name(api_version, kind)).write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
