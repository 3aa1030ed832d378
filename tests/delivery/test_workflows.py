"""The workflows call the Makefile's targets, and every target they name exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
_MAKE = re.compile(r"(?:^|[;&|]\s*|\n\s*)make\s+((?:[A-Za-z0-9_.-]+(?:=\S*)?\s*)+)")


def makefile_targets() -> set[str]:
    """The targets make itself knows (its database, not a regex over the Makefile)."""
    dump = subprocess.run(
        ["make", "-pRrq", "-f", "Makefile", ":"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {
        line.split(":", 1)[0]
        for line in dump.splitlines()
        if re.match(r"^[A-Za-z0-9_.-]+:(?!=)", line) and not line.startswith((".", "#"))
    }


def make_targets_in(text: str) -> list[str]:
    """Targets named by `make …` invocations in shell text (variables like ENV=x skipped)."""
    names: list[str] = []
    for match in _MAKE.finditer(text):
        names += [word for word in match.group(1).split() if "=" not in word]
    return names


def _run_steps(path: Path) -> list[str]:
    workflow = yaml.safe_load(path.read_text())
    return [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def test_there_are_the_three_workflows() -> None:
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "release.yml", "deploy.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_make_target_a_workflow_names_exists(path: Path) -> None:
    targets = makefile_targets()
    named = [name for run in _run_steps(path) for name in make_targets_in(run)]
    assert named, f"{path.name} calls no make target"
    assert set(named) <= targets, f"{path.name} names missing targets: {set(named) - targets}"


def test_ci_runs_the_developers_checks_through_make() -> None:
    named = {
        name
        for run in _run_steps(PROJECT_ROOT / ".github/workflows/ci.yml")
        for name in make_targets_in(run)
    }
    assert {"lint", "test", "lint-deploy", "audit"} <= named


def test_the_target_extraction_sees_what_it_should() -> None:
    assert make_targets_in("make deploy ENV=staging VERSION=1") == ["deploy"]
    assert make_targets_in("set -e\nmake lint test && make wheel") == ["lint", "test", "wheel"]
    assert "no-such-target" not in makefile_targets()
    assert {"test", "lint", "lint-deploy", "tools-delivery"} <= makefile_targets()
