"""Issue 19, acceptance 2: a DirectRunner backfill killed midway (SIGKILL of the job and
its workers) and run again ends with every row exactly once, quarantine counts included,
and the second run skips the chunks the first committed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from tests.beam.archive import SCHEMA, write_archive, write_contracts
from tests.beam.conftest import kill_session, run_beam, started_beam

EVENTS = 40_000


async def _done_chunks(url: str, job: str) -> int:
    """Chunks with both sides recorded done."""
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM (SELECT chunk FROM backfill_commits "
            "WHERE job = $1 AND part = 'done' GROUP BY chunk HAVING count(*) = 2) AS whole",
            job,
        )
        return count
    finally:
        await connection.close()


async def test_killed_backfill_resumes_with_exactly_once_rows(
    beam_python: Path, beam_database: str, tmp_path: Path
) -> None:
    contracts = write_contracts(tmp_path / "contracts", SCHEMA)
    archive = write_archive(tmp_path / "archive", EVENTS, files=4)
    env = {"DATABASE_URL": beam_database, "SLUICE_CONTRACTS_DIR": str(contracts)}
    options = [
        f"--input={tmp_path / 'archive' / '*.jsonl'}",
        "--backfill_name=resume",
        "--chunk_bytes=32768",
        "--batch_size=100",
        "--direct_num_workers=2",
        "--direct_running_mode=multi_processing",
    ]
    total_chunks = sum(-(-path.stat().st_size // 32768) for path in archive.files)

    with started_beam(beam_python, "backfill", options, env, tmp_path / "killed.log") as job:
        deadline = time.monotonic() + 240
        while await _done_chunks(beam_database, "resume") < total_chunks // 4:
            assert job.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the job committed too little in time"
            await asyncio.sleep(0.2)
        assert job.poll() is None  # still running: killed midway, not after the end
        kill_session(job)
    done_at_kill = await _done_chunks(beam_database, "resume")
    assert total_chunks // 4 <= done_at_kill < total_chunks

    resumed = await asyncio.to_thread(run_beam, beam_python, "backfill", options, env)
    assert resumed.returncode == 0, resumed.output[-4000:]

    connection = await asyncpg.connect(beam_database)
    try:
        stored = await connection.fetchval(
            "SELECT count(*) FROM events WHERE source = $1", archive.source
        )
        distinct = await connection.fetchval(
            "SELECT count(DISTINCT id) FROM events WHERE source = $1", archive.source
        )
        codes = {
            row["error_code"]: (row["rows"], row["occurrences"])
            for row in await connection.fetch(
                "SELECT error_code, count(*) AS rows, sum(occurrences) AS occurrences "
                "FROM quarantine GROUP BY error_code"
            )
        }
    finally:
        await connection.close()
    assert stored == distinct == archive.stored
    # Exactly once: one row per refusal, each counted once, despite the kill.
    assert codes == {code: (count, count) for code, count in archive.codes.items()}
    assert resumed.counters["chunks_skipped"] >= done_at_kill
    assert resumed.counters["chunks_read"] <= total_chunks - done_at_kill
    assert await _done_chunks(beam_database, "resume") == total_chunks
