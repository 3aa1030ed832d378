"""Issue 19, acceptance 1: a DirectRunner backfill of 100,000 archived events into a
fresh database stores every valid one once, quarantines the invalid ones with their
codes, pseudonymizes exactly as the live service does, and a rerun stores nothing."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson

from tests.beam.archive import valid_event
from tests.beam.conftest import PSEUDONYM_KEY, backfill_of, run_beam, stored_of
from tests.conftest import SettingsFactory, running_app
from tests.support import unique_source

EVENTS = 100_000


async def _live_rows(make_settings: SettingsFactory, contracts: Path) -> dict[str, asyncpg.Record]:
    """What the live service stores for events 0..39 (one per subject), by event id."""
    source = unique_source("live")
    settings = make_settings(privacy={"pseudonym_key": PSEUDONYM_KEY}, contracts={"dir": contracts})
    async with running_app(settings) as client:
        answer = await client.post("/ingest", json=[valid_event(source, n) for n in range(40)])
        assert answer.status_code == 200, answer.text
    connection = await asyncpg.connect(settings.database_url)
    try:
        return await _rows(connection, source, 40)
    finally:
        await connection.close()


async def _rows(
    connection: asyncpg.Connection, source: str, below: int
) -> dict[str, asyncpg.Record]:
    rows = await connection.fetch(
        "SELECT id, subject_pseudonym, pseudonym_key_id, policy_version, data::text AS data "
        "FROM events WHERE source = $1 AND id::int < $2",
        source,
        below,
    )
    return {row["id"]: row for row in rows}


async def test_backfill_of_100000_events_stores_each_once_like_the_live_service(
    beam_python: Path,
    beam_database: str,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    job = backfill_of(tmp_path, beam_database, events=EVENTS, files=4, name="acceptance")
    archive, env, options = job.archive, job.env, job.options

    first = run_beam(beam_python, "backfill", options, env)
    assert first.returncode == 0, first.output[-4000:]
    again = run_beam(beam_python, "backfill", options, env)
    assert again.returncode == 0, again.output[-4000:]

    connection = await asyncpg.connect(beam_database)
    try:
        transports = await connection.fetchval(
            "SELECT array_agg(DISTINCT transport) FROM quarantine"
        )
        backfilled = await _rows(connection, archive.source, 40)
    finally:
        await connection.close()

    stored = await stored_of(beam_database, archive.source)
    assert archive.lines == EVENTS
    assert stored.events == stored.distinct_ids == archive.stored
    assert stored.codes == {code: (count, count) for code, count in archive.codes.items()}
    assert transports == ["file"]
    assert first.counters["events_stored"] == archive.stored
    assert first.counters["events_duplicate"] == archive.repeats
    assert first.counters["quarantine_rejected"] == archive.quarantined
    assert first.counters["lines_read"] == EVENTS
    # The rerun finds every chunk committed: nothing read, nothing written.
    assert again.counters["chunks_skipped"] == first.counters["chunks_read"]
    assert again.counters.get("events_stored", 0) == 0
    assert again.counters.get("lines_read", 0) == 0

    live = await _live_rows(make_settings, Path(env["SLUICE_CONTRACTS_DIR"]))
    assert sorted(live, key=int) == [str(n) for n in range(40)]
    # Of events 0..39, the archive spoils 7, 13, 21 and 33; the other 36 subjects compare.
    assert len(backfilled) == 36
    assert set(backfilled) <= set(live)
    for event_id, twin in backfilled.items():
        row = live[event_id]
        assert twin["subject_pseudonym"] == row["subject_pseudonym"] is not None
        assert (twin["pseudonym_key_id"], twin["policy_version"]) == (
            row["pseudonym_key_id"],
            row["policy_version"],
        )
        # `data` went through the same policy: its e-mail is the same pseudonym.
        assert orjson.loads(twin["data"]) == orjson.loads(row["data"])
        assert "@" not in twin["data"]
