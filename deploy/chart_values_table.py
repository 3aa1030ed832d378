"""The values table of charts/sluice/README.md, from values.yaml and its `# --` comments.

Each `# -- text` comment (continued by plain `#` lines) describes the key below it. A map
whose keys carry no description of their own is one row. Rewrites the table between the
README's markers; `tests/chart/test_readme.py` fails when it is out of date.

Usage: python deploy/chart_values_table.py   (`make chart-readme`)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "sluice"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_]+):")


def descriptions(text: str) -> dict[str, str]:
    """Dotted key path → the `# --` comment above it."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending:
                pending.append(stripped.removeprefix("#").strip())
            continue
        match = _KEY.match(line)
        if match is None:
            pending = []
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if pending:
            found[".".join(key for _, key in stack)] = " ".join(pending)
        pending = []
    return found


def rows(
    values: dict[str, Any], described: dict[str, str], prefix: str = ""
) -> list[tuple[str, str, str]]:
    """(key, default as JSON, description) for every row of the table."""
    table = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        inner = any(name.startswith(f"{path}.") for name in described)
        if isinstance(value, dict) and value and inner:
            table += rows(value, described, f"{path}.")
        else:
            table.append((path, json.dumps(value), described.get(path, "")))
    return table


def table() -> str:
    text = (CHART / "values.yaml").read_text()
    lines = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for key, default, description in rows(yaml.safe_load(text), descriptions(text)):
        cell, words = (part.replace("|", "\\|") for part in (default, description))
        lines.append(f"| `{key}` | `{cell}` | {words} |")
    return "\n".join(lines)


def with_table(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    readme = CHART / "README.md"
    readme.write_text(with_table(readme.read_text()))
