"""checkov finds nothing in the chart (its own Helm render and ours of every value set)
and the Dockerfile; every skip carries its reason where it applies.

checkov run offline gives no severities, so "no high findings" is held as no failed check
at all. Skips: `checkov.io/skipN` annotations in the templates and
`charts/sluice/.checkov.yaml`, each with its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.chart.conftest import CHART, VALUE_FILES, rendered
from tests.support import PROJECT_ROOT
from tests.tooling import CACHE, require_tool


def _reports(output: str) -> list[dict[str, Any]]:
    """checkov prints one JSON document per framework, some of them lists."""
    decoder, reports, index = json.JSONDecoder(), [], 0
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(output, index)
        reports += document if isinstance(document, list) else [document]
    return reports


OFFLINE_JSON = ("--skip-download", "--output", "json")


def _checkov(*arguments: str) -> list[dict[str, Any]]:
    """Run checkov offline with the chart's configuration; every report must be clean."""
    checkov = require_tool("checkov", where=CACHE / "checkov-venv" / "bin")
    helm_bin = CACHE / "bin"
    require_tool("helm", where=helm_bin)  # the helm framework renders with a helm binary
    result = subprocess.run(  # noqa: S603 - the scanner on our own files
        [checkov, *arguments, "--config-file", str(CHART / ".checkov.yaml"), *OFFLINE_JSON],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PATH": f"{helm_bin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reports = _reports(result.stdout)
    failed = [
        f"{r['check_type']}: {c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, failed
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert all(r["summary"]["passed"] > 0 for r in reports)
    for report in reports:
        for skipped in report["results"].get("skipped_checks", []):
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
            assert len(reason) > 10, f"{skipped['check_id']} is skipped without a reason"
    assert result.returncode == 0, result.stderr[-2000:]
    return reports


def test_checkov_passes_the_chart_and_the_rendered_manifests(tmp_path: Path) -> None:
    for value_set in VALUE_FILES:
        manifests = [m.body for m in rendered(value_set)]
        (tmp_path / f"{value_set}.yaml").write_text(yaml.safe_dump_all(manifests))
    reports = _checkov(
        "--directory", str(CHART), "--directory", str(tmp_path),
        "--framework", "helm", "kubernetes",
    )  # fmt: skip
    assert {r["check_type"] for r in reports} == {"helm", "kubernetes"}


def test_checkov_passes_the_dockerfile() -> None:
    reports = _checkov("--file", "Dockerfile", "--framework", "dockerfile")
    assert [r["check_type"] for r in reports] == ["dockerfile"]
