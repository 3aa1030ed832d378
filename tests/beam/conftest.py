"""Fixtures for the Beam pipelines: the Beam virtualenv's Python, a fresh migrated
database per test, and a way to run `python -m sluice_beam` against it.

The pipelines run in their own virtualenv (`make tools-beam`), never in the service's
`.venv`, so these tests drive that interpreter as a child process. `PYTHONPATH` puts
this clone's `app` and `beam/` first, whichever clone built the virtualenv. Without the
virtualenv the tests skip, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from app.storage import migrations
from tests.beam.archive import SCHEMA, Archive, write_archive, write_contracts
from tests.conftest import in_ci
from tests.support import PROJECT_ROOT

BEAM_VENV = Path(
    os.environ.get(
        "SLUICE_BEAM_VENV",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice" / "beam-venv",
    )
)
# A development key of the tests' own: pseudonyms must match because the settings are
# the same, not because both sides fell back to the public development key.
PSEUDONYM_KEY = "beam-tests-pseudonym-key-0123456789"


@pytest.fixture(scope="session")
def beam_python() -> Path:
    python = BEAM_VENV / "bin" / "python"
    probe = (
        subprocess.run(  # noqa: S603 - the Beam virtualenv's own interpreter
            [str(python), "-c", "import apache_beam"],
            capture_output=True,
            check=False,
            env=beam_env({}),
        )
        if python.exists()
        else None
    )
    if probe is None or probe.returncode != 0:
        reason = f"the Beam virtualenv is missing or broken at {BEAM_VENV} (make tools-beam)"
        if in_ci():
            pytest.fail(f"{reason}; under CI=true that is a failure")
        pytest.skip(reason)
    return python


def beam_env(extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "beam")]),
        "SLUICE_ENV": "test",
        "SLUICE_PRIVACY_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "SLUICE_LOG_LEVEL": "WARNING",
        **extra,
    }


@pytest.fixture
async def beam_database(fresh_database: str) -> str:
    """A fresh database of this test's own, migrated to head, dropped afterwards."""
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    return fresh_database


@dataclass(frozen=True, slots=True)
class Stored:
    """What a backfill of one archive left in the database."""

    events: int
    distinct_ids: int
    # Quarantine rows per error code, with their occurrences summed.
    codes: dict[str, tuple[int, int]]


async def stored_of(url: str, source: str) -> Stored:
    connection = await asyncpg.connect(url)
    try:
        events = await connection.fetchval("SELECT count(*) FROM events WHERE source = $1", source)
        distinct = await connection.fetchval(
            "SELECT count(DISTINCT id) FROM events WHERE source = $1", source
        )
        rows = await connection.fetch(
            "SELECT error_code, count(*) AS rows, sum(occurrences) AS occurrences "
            "FROM quarantine GROUP BY error_code"
        )
    finally:
        await connection.close()
    return Stored(events, distinct, {r["error_code"]: (r["rows"], r["occurrences"]) for r in rows})


@dataclass(frozen=True, slots=True)
class BeamRun:
    returncode: int
    counters: dict[str, Any]
    output: str


def beam_command(python: Path, command: str, *options: str) -> list[str]:
    return [str(python), "-m", "sluice_beam", command, *options]


def run_beam(
    python: Path,
    command: str,
    options: Sequence[str],
    env: dict[str, str],
    *,
    timeout_s: float = 300,
) -> BeamRun:
    """Run a pipeline to its end; its counters from the JSON line it prints last."""
    done = subprocess.run(  # noqa: S603 - the Beam virtualenv running our own pipeline
        beam_command(python, command, *options),
        cwd=PROJECT_ROOT,
        env=beam_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    counters = orjson.loads(lines[-1]) if lines else {}
    return BeamRun(done.returncode, counters, output)


@contextmanager
def started_beam(
    python: Path, command: str, options: Sequence[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A pipeline run in a session of its own (its DirectRunner workers with it); the
    whole session is killed on the way out if it is still running."""
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - the Beam virtualenv running our pipeline
            beam_command(python, command, *options),
            cwd=PROJECT_ROOT,
            env=beam_env(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            kill_session(process)


def kill_session(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the process and every process of its session (by its group id)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers too, even if the leader is gone
    process.wait(timeout=30)


@dataclass(frozen=True, slots=True)
class Backfill:
    """An archive written for a test, and how to backfill it into `url`."""

    archive: Archive
    env: dict[str, str]
    options: list[str]


def backfill_of(
    tmp_path: Path, url: str, *, events: int, files: int, name: str, options: Sequence[str] = ()
) -> Backfill:
    """`events` archived events, backfilled under the strict contract with two
    DirectRunner worker processes."""
    contracts = write_contracts(tmp_path / "contracts", SCHEMA)
    archive = write_archive(tmp_path / "archive", events, files=files)
    return Backfill(
        archive,
        {"DATABASE_URL": url, "SLUICE_CONTRACTS_DIR": str(contracts)},
        [
            f"--input={tmp_path / 'archive' / '*.jsonl'}",
            f"--backfill_name={name}",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
            *options,
        ],
    )
