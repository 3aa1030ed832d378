"""Finding the command-line tools the deployment tests run (podman, checkov, hadolint).

`make tools-k8s` installs them. Without one, a test fails under `CI=true` (CI must prove
the real tool passes) and skips with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import in_ci

VENV_BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"


def require_tool(name: str, *, where: Path | None = None) -> str:
    """The path of `name` in `where` (a tool's own venv), or else in the project's venv or
    on PATH; otherwise fail (CI) or skip."""
    for candidate in (where,) if where is not None else (VENV_BIN,):
        if (candidate / name).exists():
            return str(candidate / name)
    found = shutil.which(name) if where is None else None
    if found is not None:
        return found
    reason = f"{name} is not installed (make tools-k8s installs it)"
    if in_ci():
        pytest.fail(f"{reason}; under CI=true that is a failure")
    pytest.skip(reason)
