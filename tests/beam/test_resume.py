"""Issue 19, acceptance 2: a DirectRunner backfill killed midway (SIGKILL of the job and
its workers) and run again ends with every row exactly once, quarantine counts included,
and the second run skips the chunks the first committed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from tests.beam.conftest import backfill_of, kill_session, run_beam, started_beam, stored_of

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
    job = backfill_of(
        tmp_path,
        beam_database,
        events=EVENTS,
        files=4,
        name="resume",
        options=["--chunk_bytes=32768", "--batch_size=100"],
    )
    archive, env, options = job.archive, job.env, job.options
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

    stored = await stored_of(beam_database, archive.source)
    assert stored.events == stored.distinct_ids == archive.stored
    # Exactly once: one row per refusal, each counted once, despite the kill.
    assert stored.codes == {code: (count, count) for code, count in archive.codes.items()}
    assert resumed.counters["chunks_skipped"] >= done_at_kill
    assert resumed.counters["chunks_read"] <= total_chunks - done_at_kill
    assert await _done_chunks(beam_database, "resume") == total_chunks
