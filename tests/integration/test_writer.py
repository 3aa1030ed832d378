"""BatchWriter and table upkeep on real PostgreSQL: refused values isolated, partitions
created on demand and ahead, idempotency keys trimmed past the dedup window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from app.config import DatabaseSettings
from app.errors import ErrorCode
from app.model.events import AnonymizedEvent, Transport
from app.model.outcomes import Outcome
from app.pipeline.writer import BatchWriter
from app.storage.database import create_pool
from app.storage.repository import EventRepository
from tests.support import anonymized_event, unique_source

FAR_FUTURE = datetime(2031, 3, 14, 15, 9, tzinfo=UTC)


def _event(source: str, event_id: str, *, data_json: str = '{"n": 1}') -> AnonymizedEvent:
    return anonymized_event(source, event_id, data_json=data_json)


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[EventRepository]:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    try:
        yield EventRepository(pool)
    finally:
        await pool.close()


async def test_a_value_postgres_refuses_fails_only_its_own_event(
    repository: EventRepository, db: asyncpg.Connection
) -> None:
    source = unique_source()
    batch = [_event(source, str(i)) for i in range(7)]
    batch[4] = _event(source, "4", data_json="{not json")  # jsonb refuses it: SQLSTATE 22P02
    writer = BatchWriter(repository, DatabaseSettings(), max_backoff_s=0.1)

    outcomes = await writer.write(batch, deadline=float("inf"))

    assert outcomes == [Outcome.STORED] * 4 + [Outcome.REJECTED] + [Outcome.STORED] * 2
    stored = await db.fetch("SELECT id FROM events WHERE source = $1 ORDER BY id", source)
    assert [row["id"] for row in stored] == ["0", "1", "2", "3", "5", "6"]
    # Quarantined by code, with none of the refused values.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM quarantine WHERE error_code = $1 AND source IS NULL",
            str(ErrorCode.STORAGE_REFUSED_VALUE),
        )
        >= 1
    )


async def test_partition_is_created_before_writing_past_the_horizon(
    repository: EventRepository, db: asyncpg.Connection
) -> None:
    source = unique_source()
    writer = BatchWriter(
        repository,
        DatabaseSettings(partitions_ahead=1),
        max_backoff_s=0.1,
        wall_clock=lambda: FAR_FUTURE,
    )
    outcomes = await writer.write([_event(source, "future")], deadline=float("inf"))

    assert outcomes == [Outcome.STORED]
    assert await db.fetchval("SELECT to_regclass('events_p20310314') IS NOT NULL")
    assert await db.fetchval("SELECT to_regclass('events_p20310315') IS NOT NULL")
    partition = await db.fetchval(
        "SELECT tableoid::regclass::text FROM events WHERE source = $1", source
    )
    assert partition == "events_p20310314"


async def test_a_dropped_partition_is_recreated_and_the_write_retried(
    repository: EventRepository, db: asyncpg.Connection
) -> None:
    source = unique_source()
    moment = datetime(2033, 6, 1, 12, tzinfo=UTC)
    writer = BatchWriter(
        repository, DatabaseSettings(), max_backoff_s=0.05, wall_clock=lambda: moment
    )
    assert await writer.write([_event(source, "before")], deadline=float("inf")) == [Outcome.STORED]
    await db.execute("DROP TABLE events_p20330601")  # the writer still believes it exists

    outcomes = await writer.write([_event(source, "after")], deadline=float("inf"))

    assert outcomes == [Outcome.STORED]
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 1


async def test_every_field_of_a_batch_row_reaches_its_column(
    repository: EventRepository, db: asyncpg.Connection
) -> None:
    """The batch travels as `event_batch_row_v1` tuples in field order: a field out of
    place, a lost microsecond or time zone, or a JSON column not parsed would show here."""
    source = unique_source()
    full = AnonymizedEvent(
        specversion="1.0",
        id="full",
        source=source,
        type="com.example.full",
        time=datetime(2026, 12, 2, 10, 11, 12, 345678, tzinfo=UTC),
        subject_pseudonym="p" * 64,
        pseudonym_key_id="k7",
        datacontenttype="application/json",
        dataschema="https://example.com/schema",
        data_json='{"n": [1, "ü", null]}',
        data_is_base64=True,
        extensions_json='{"traceparent": "00-ab"}',
        size=100,
        transport=Transport.HTTP,
        policy_version="policy@1",
        subject_lookup="p" * 64,
        contract_version="com.example.full@2",
        violations_json='[{"code": "type", "field": "/n"}]',
    )
    sparse = anonymized_event(source, "sparse", data_json=None)
    received_at = datetime.now(UTC)

    result = await repository.write_batch([full, sparse], [], received_at=received_at)

    assert result.new == {full.key, sparse.key}
    rows = {
        row["id"]: row
        for row in await db.fetch(
            "SELECT *, data::text AS data_text, extensions::text AS ext_text,"
            " violations::text AS violations_text FROM events WHERE source = $1",
            source,
        )
    }
    row = rows["full"]
    assert (row["type"], row["specversion"], row["time"]) == (full.type, "1.0", full.time)
    assert (row["subject_pseudonym"], row["pseudonym_key_id"]) == ("p" * 64, "k7")
    assert (row["datacontenttype"], row["dataschema"]) == (full.datacontenttype, full.dataschema)
    assert row["data_text"] == '{"n": [1, "ü", null]}'
    assert row["data_is_base64"] is True
    assert row["ext_text"] == '{"traceparent": "00-ab"}'
    assert (row["policy_version"], row["contract_version"]) == ("policy@1", "com.example.full@2")
    assert row["violations_text"] == '[{"code": "type", "field": "/n"}]'
    assert row["received_at"] == received_at
    empty = rows["sparse"]
    assert empty["time"] is None
    assert empty["data_text"] is None
    assert empty["violations"] is None
    assert empty["ext_text"] == "{}"
    assert empty["subject_pseudonym"] is None
