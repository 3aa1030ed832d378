"""A production install, the package without its dev extras (what the image holds), serves.

The dev extras install test tools (pytest, httpx once) that the service must not need: a
fresh venv gets `pip install .` only, then migrates, serves under gunicorn and stores an
event. The image itself installs `requirements.lock`; a test here keeps that lock in step
with `[project].dependencies`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import PROJECT_ROOT, free_port, make_event, wait_until_healthy
from tests.tooling import require_tool

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def production_python() -> Iterator[Path]:
    """The interpreter of a fresh venv holding `pip install .` and nothing else."""
    with tempfile.TemporaryDirectory(prefix="sluice-prod-venv-") as directory:
        venv = Path(directory)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)  # noqa: S603
        python = venv / "bin" / "python"
        # uv, not pip: the same install of `.` without extras, from uv's cache in seconds.
        install = subprocess.run(  # noqa: S603 - installing this project
            [require_tool("uv"), "pip", "install", "--quiet", "--python", python, PROJECT_ROOT],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert install.returncode == 0, install.stderr[-4000:]
        yield python


def _importable(python: Path, module: str) -> bool:
    probe = subprocess.run(  # noqa: S603 - the venv's interpreter importing one module
        [python, "-c", f"import {module}"],
        capture_output=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    return probe.returncode == 0


def test_the_install_has_no_dev_extras(production_python: Path) -> None:
    for dev_only in ("pytest", "pgserver", "mypy"):
        assert not _importable(production_python, dev_only), f"{dev_only} came with `pip install .`"
    assert _importable(production_python, "httpx")


def test_a_production_install_migrates_serves_and_stores(
    production_python: Path, fresh_database: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database,
        "SLUICE_ENV": "development",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="sluice-prod-metrics-"),
    }
    argv = [production_python, "-m", "app", "serve", "--workers", "1", "--migrate"]
    with tempfile.TemporaryFile() as log:
        # From the project tree, as the image runs it (migrations/ and gunicorn.conf.py
        # beside app/); every import outside app/ comes from the fresh venv.
        process = subprocess.Popen(  # noqa: S603 - the venv's interpreter, our CLI
            [*argv, "--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process, 60, log, probe="ready")
            source = f"/prod-install/{uuid.uuid4().hex}"
            answer = httpx.post(f"{base_url}/ingest", json=make_event(source, "1"), timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["results"][0]["status"] == "stored"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0


def test_the_lock_holds_every_core_dependency_hashed_and_no_dev_tool() -> None:
    """`make lock` refreshes it; a dependency added to pyproject.toml alone fails here."""
    text = (PROJECT_ROOT / "requirements.lock").read_text().replace("\\\n", "")
    pins = [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]
    locked = {canonicalize_name(line.split("==", 1)[0]) for line in pins}
    for line in pins:
        assert "--hash=sha256:" in line, f"not hash-pinned: {line}"
    for spec in PYPROJECT["project"]["dependencies"]:
        assert canonicalize_name(Requirement(spec).name) in locked, spec
    for dev_tool in ("pytest", "mypy", "ruff", "pgserver", "hypothesis"):
        assert dev_tool not in locked, f"{dev_tool} is a dev extra, not an image dependency"
