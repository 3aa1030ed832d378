"""Table upkeep on a database of the test's own: partitions ahead, retention by DROP,
trimming by age, and one maintainer at a time across processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.config import DatabaseSettings, RetentionSettings
from app.pipeline.writer import BatchWriter
from app.storage import migrations
from app.storage.database import create_pool
from app.storage.maintenance import maintain
from app.storage.repository import EventRepository
from tests.integration.test_writer import _event
from tests.support import unique_source

NOW = datetime.now(UTC)
DB = DatabaseSettings(pool_min_size=1, pool_max_size=3, partitions_ahead=2, dedup_window_days=31)
RETENTION = RetentionSettings(events_days=30, quarantine_days=10, audit_days=100, quality_days=14)


@pytest.fixture
async def migrated(fresh_database: str) -> str:
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    return fresh_database


@pytest.fixture
async def repository(migrated: str) -> AsyncIterator[EventRepository]:
    pool = await create_pool(migrated, DB)
    try:
        yield EventRepository(pool)
    finally:
        await pool.close()


async def _partitions(connection: asyncpg.Connection) -> list[str]:
    rows = await connection.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass ORDER BY 1"
    )
    return [row["relname"] for row in rows]


async def _store_at(
    repository: EventRepository, moment: datetime, source: str, event_id: str
) -> None:
    writer = BatchWriter(repository, DB, max_backoff_s=0.05, wall_clock=lambda: moment)
    await writer.write([_event(source, event_id)], deadline=float("inf"))


async def test_retention_drops_expired_partitions_whole_and_keeps_current(
    repository: EventRepository, migrated: str
) -> None:
    source = unique_source()
    old, kept = NOW - timedelta(days=45), NOW - timedelta(days=5)
    await _store_at(repository, old, source, "old")
    await _store_at(repository, kept, source, "kept")
    await _store_at(repository, NOW, source, "now")
    connection = await asyncpg.connect(migrated)
    try:
        before = await _partitions(connection)
        report = await maintain(repository, DB, RETENTION, NOW)
        after = await _partitions(connection)
        remaining = await connection.fetch("SELECT id FROM events ORDER BY id")
    finally:
        await connection.close()

    old_partition = f"events_p{old:%Y%m%d}"
    assert report.ran
    assert old_partition in before
    assert old_partition in report.partitions_dropped
    assert old_partition not in after  # the table itself is gone: DROP, not DELETE
    assert f"events_p{kept:%Y%m%d}" in after
    assert f"events_p{NOW:%Y%m%d}" in after  # the current one is never touched
    assert all(name >= f"events_p{NOW - timedelta(days=30):%Y%m%d}" for name in after)
    assert [row["id"] for row in remaining] == ["kept", "now"]


async def test_trims_keys_quarantine_and_audit_by_age(
    repository: EventRepository, migrated: str
) -> None:
    connection = await asyncpg.connect(migrated)
    try:
        await connection.executemany(
            "INSERT INTO event_keys (source, id, first_seen_at) VALUES ('/s', $1, $2)",
            [("old", NOW - timedelta(days=40)), ("recent", NOW - timedelta(days=2))],
        )
        await connection.executemany(
            "INSERT INTO quarantine (received_at, last_seen_at, fingerprint, transport, "
            "error_code, error_message) "
            "VALUES ($1, $2, $3, 'http', 'envelope.missing_attribute', 'm')",
            [
                # First seen long ago but seen again lately: kept (retention counts from
                # the last sighting).
                (NOW - timedelta(days=30), NOW - timedelta(days=11), "old"),
                (NOW - timedelta(days=30), NOW - timedelta(days=1), "recent"),
            ],
        )
        await connection.executemany(
            "INSERT INTO quality_counts (bucket_start, type, outcome, code, events) "
            "VALUES ($1, '_other', 'stored', '', 1)",
            [(NOW - timedelta(days=15),), (NOW - timedelta(days=1),)],
        )
        await connection.executemany(
            "INSERT INTO subject_audit (requested_at, action, requester, subject_pseudonym, "
            "key_id, events_deleted, quarantine_deleted) "
            "VALUES ($1, 'erase', 'dpo', 'p', 'k1', 0, 0)",
            [(NOW - timedelta(days=101),), (NOW - timedelta(days=99),)],
        )
        report = await maintain(repository, DB, RETENTION, NOW)
        keys = await connection.fetch("SELECT id FROM event_keys")
        quarantine = await connection.fetchval("SELECT fingerprint FROM quarantine")
        audit = await connection.fetchval("SELECT count(*) FROM subject_audit")
    finally:
        await connection.close()
    assert report.rows_trimmed == {
        "event_keys": 1,
        "quarantine": 1,
        "subject_audit": 1,
        "quality_counts": 1,
    }
    assert [row["id"] for row in keys] == ["recent"]
    assert (quarantine, audit) == ("recent", 1)


async def test_partitions_are_created_ahead_and_a_second_run_is_a_no_op(
    repository: EventRepository,
) -> None:
    month = DatabaseSettings(partition_width="month", partitions_ahead=2)
    moment = datetime(2032, 1, 30, tzinfo=UTC)
    first = await maintain(repository, month, RETENTION, moment)
    second = await maintain(repository, month, RETENTION, moment)
    assert first.partitions_created == ["events_p20320101", "events_p20320201", "events_p20320301"]
    assert first.partitions_ready_until == datetime(2032, 4, 1, tzinfo=UTC)
    assert second.partitions_created == []


async def test_two_maintainers_at_once_are_safe(migrated: str) -> None:
    """Two processes' worth of pools run upkeep at the same moment: no error, no race."""
    pools = [await create_pool(migrated, DB) for _ in range(2)]
    try:
        repositories = [EventRepository(pool) for pool in pools]
        await _store_at(repositories[0], NOW - timedelta(days=60), unique_source(), "expired")
        for _ in range(5):
            reports = await asyncio.gather(
                *(maintain(repository, DB, RETENTION, NOW) for repository in repositories)
            )
            assert any(report.ran for report in reports)
        connection = await asyncpg.connect(migrated)
        try:
            partitions = await _partitions(connection)
        finally:
            await connection.close()
    finally:
        for pool in pools:
            await pool.close()
    assert f"events_p{NOW - timedelta(days=60):%Y%m%d}" not in partitions
    assert f"events_p{NOW:%Y%m%d}" in partitions
