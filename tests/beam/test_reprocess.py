"""Issue 19, acceptance 3: quarantined events that a relaxed contract now accepts are
stored once by the reprocess pipeline, in parallel by partition of their time range,
and marked replayed; a second run stores nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.beam.archive import RELAXED, SCHEMA, write_archive, write_contracts
from tests.beam.conftest import run_beam, stored_of

EVENTS = 3_000


async def test_reprocess_stores_what_the_relaxed_contract_accepts_once(
    beam_python: Path, beam_database: str, tmp_path: Path
) -> None:
    strict = write_contracts(tmp_path / "strict", SCHEMA)
    relaxed = write_contracts(tmp_path / "relaxed", RELAXED)
    archive = write_archive(tmp_path / "archive", EVENTS, files=3)
    backfilled = await asyncio.to_thread(
        run_beam,
        beam_python,
        "backfill",
        [f"--input={tmp_path / 'archive' / '*.jsonl'}", "--backfill_name=r", "--chunk_bytes=16384"],
        {"DATABASE_URL": beam_database, "SLUICE_CONTRACTS_DIR": str(strict)},
    )
    assert backfilled.returncode == 0, backfilled.output[-4000:]
    assert backfilled.counters["events_stored"] == archive.stored

    env = {"DATABASE_URL": beam_database, "SLUICE_CONTRACTS_DIR": str(relaxed)}
    options = ["--partitions=4", "--quarantine_code=contract.violation"]
    checked = await asyncio.to_thread(
        run_beam, beam_python, "reprocess", [*options, "--check_only"], env
    )
    first = await asyncio.to_thread(run_beam, beam_python, "reprocess", options, env)
    second = await asyncio.to_thread(run_beam, beam_python, "reprocess", options, env)
    for run in (checked, first, second):
        assert run.returncode == 0, run.output[-4000:]

    violations = archive.relaxable + archive.hopeless
    assert checked.counters["replay_examined"] == violations
    assert checked.counters["replay_passed"] == archive.relaxable
    assert checked.counters.get("replay_stored", 0) == 0
    assert first.counters["replay_stored"] == archive.relaxable
    assert first.counters["replay_still_failing"] == archive.hopeless
    assert first.counters["partitions_replayed"] > 1  # the range was split and fanned out
    # Replayed rows are done; only the hopeless ones are looked at again.
    assert second.counters["replay_examined"] == archive.hopeless
    assert second.counters.get("replay_stored", 0) == 0

    connection = await asyncpg.connect(beam_database)
    try:
        replayed = await connection.fetchval(
            "SELECT count(*) FROM quarantine WHERE replayed_at IS NOT NULL"
        )
        amounts = await connection.fetch(
            "SELECT data->>'amount' AS amount FROM events "
            "WHERE source = $1 AND jsonb_typeof(data->'amount') = 'string'",
            archive.source,
        )
    finally:
        await connection.close()
    stored = await stored_of(beam_database, archive.source)
    assert stored.events == stored.distinct_ids == archive.stored + archive.relaxable
    assert replayed == archive.relaxable
    assert len(amounts) == archive.relaxable
    assert all(row["amount"].endswith(" EUR") for row in amounts)
