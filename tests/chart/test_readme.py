"""charts/sluice/README.md: its values table is values.yaml's (keys, defaults, comments)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import yaml

from tests.chart.conftest import CHART
from tests.support import PROJECT_ROOT


def _generator() -> ModuleType:
    path = PROJECT_ROOT / "deploy" / "chart_values_table.py"
    spec = importlib.util.spec_from_file_location("chart_values_table", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaves(values: dict[str, object], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for key, value in values.items():
        if isinstance(value, dict) and value:
            found |= _leaves(value, f"{prefix}{key}.")
        else:
            found.add(f"{prefix}{key}")
    return found


def test_the_values_table_is_up_to_date() -> None:
    generator = _generator()
    readme = (CHART / "README.md").read_text()
    assert generator.with_table(readme) == readme, "run make chart-readme"


def test_every_value_is_in_the_table_with_a_description() -> None:
    generator = _generator()
    text = (CHART / "values.yaml").read_text()
    rows = generator.rows(yaml.safe_load(text), generator.descriptions(text))
    keys = {key for key, _, _ in rows}
    every = _leaves(yaml.safe_load(text))
    # Each value is a row, or lies inside a map that is one row.
    assert all(any(v == k or v.startswith(f"{k}.") for k in keys) for v in every)
    assert all(description for _, _, description in rows)
