"""All SQL Sluice runs, behind methods that speak in events, keys and partitions.

Errors are mapped here, by SQLSTATE class, never by message text (the classes are
drawn in `app/errors.py`):

- `TransientStorageError`: the same statement may succeed if retried, as judged by the
  one retry policy (`app.storage.retry.is_transient`: connection lost, a read-only
  server after a failover, serialization failure, deadlock, shutdown, timeouts);
  `PartitionMissing` is one;
- `StorageRefusedValue`: PostgreSQL refused a value in the batch (SQLSTATE classes 22,
  23, 54); retrying the same rows cannot help, splitting the batch can;
- `StorageUnavailable`: anything else (a missing table, say): not the events' fault,
  not fixed by a retry; the waiters get 503 and an operator is needed.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg
import orjson

from app.errors import (
    PartitionMissing,
    SluiceError,
    StorageRefusedValue,
    StorageUnavailable,
    TransientStorageError,
)
from app.model.events import AnonymizedEvent, QuarantineRecord
from app.observability import metrics
from app.storage.partitions import PartitionRange
from app.storage.retry import is_transient

log = logging.getLogger(__name__)

_REFUSED_CLASSES = frozenset({"22", "23", "54"})  # data exception, integrity, program limit
# Advisory lock keys shared by every Sluice process. Distinct: maintenance holds its session
# lock while its own DDL takes the transaction lock on another connection.
_PARTITION_DDL_LOCK = 0x51_0CE
_MAINTENANCE_LOCK = 0x51_0CF
# Tables trimmed by age, and the column that dates a row. Fixed names: never from input.
_TRIMMABLE = {
    "event_keys": "first_seen_at",
    "quarantine": "last_seen_at",
    "quality_counts": "bucket_start",
    "subject_audit": "requested_at",
}
_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class BatchResult:
    new: set[tuple[str, str]]
    suppressed: set[tuple[str, str]]


# The batch's events as `event_batch_row_v1` values (migration 20261202_write_path), in
# the type's field order: asyncpg encodes the array of tuples in binary, PostgreSQL reads
# it without parsing. One JSON document instead (`json_to_recordset`, before) cost
# PostgreSQL about 7 µs more per event, lexing it and then each payload a second time.
BATCH_ROW_FIELDS = (
    "source",
    "id",
    "type",
    "specversion",
    "time",
    "subject_pseudonym",
    "pseudonym_key_id",
    "datacontenttype",
    "dataschema",
    "data_json",
    "data_is_base64",
    "extensions_json",
    "policy_version",
    "subject_lookup",
    "contract_version",
    "violations_json",
)
_BATCH_ROW = operator.attrgetter(*BATCH_ROW_FIELDS)

# One statement, one round trip, one transaction: keys that are new claim their events'
# rows; keys already present mean duplicates; events of suppressed subjects are neither
# stored nor claimed; refused events land in quarantine (a JSON array: rare, and its
# rows are grouped by fingerprint first). docs/benchmarks.md compares the alternatives.
WRITE_BATCH = """
WITH incoming AS (
    SELECT * FROM unnest($1::event_batch_row_v1[])
),
suppressed AS (
    SELECT i.source, i.id FROM incoming i
    WHERE i.subject_lookup IS NOT NULL AND EXISTS (
        SELECT 1 FROM suppressed_subjects s
        WHERE s.subject_pseudonym = ANY(string_to_array(i.subject_lookup, ','))
    )
),
new_keys AS (
    INSERT INTO event_keys (source, id, first_seen_at)
    SELECT i.source, i.id, $2 FROM incoming i
    WHERE NOT EXISTS (SELECT 1 FROM suppressed x WHERE x.source = i.source AND x.id = i.id)
    ON CONFLICT DO NOTHING
    RETURNING source, id
),
stored AS (
    INSERT INTO events (source, id, type, specversion, time, subject_pseudonym,
                        pseudonym_key_id, datacontenttype, dataschema, data,
                        data_is_base64, extensions, received_at, policy_version,
                        contract_version, violations)
    SELECT i.source, i.id, i.type, i.specversion, i.time, i.subject_pseudonym,
           i.pseudonym_key_id, i.datacontenttype, i.dataschema, i.data_json::jsonb,
           i.data_is_base64, i.extensions_json::jsonb, $2, i.policy_version,
           i.contract_version, i.violations_json::jsonb
    FROM incoming i JOIN new_keys k ON k.source = i.source AND k.id = i.id
),
quarantined AS (
    INSERT INTO quarantine (received_at, last_seen_at, fingerprint, occurrences, transport,
                            error_code, error_field, error_message, source, event_id, type,
                            subject_pseudonym, attributes, data, policy_version,
                            contract_version, violations, event)
    SELECT $2, $2, q.fingerprint, q.occurrences, q.transport, q.code, q.field, q.message,
           q.source, q.event_id, q.type, q.subject_pseudonym, q.attributes_json::jsonb,
           q.data_json::jsonb, q.policy_version, q.contract_version,
           q.violations_json::jsonb, q.event_json::jsonb
    FROM json_to_recordset($3::json) AS q(
        fingerprint text, occurrences bigint, transport text, code text, field text,
        message text, source text, event_id text, type text, subject_pseudonym text,
        attributes_json text, data_json text, policy_version text, contract_version text,
        violations_json text, event_json text)
    -- An erased, suppressed subject's refused events are not kept either.
    WHERE q.subject_pseudonym IS NULL OR NOT EXISTS (
        SELECT 1 FROM suppressed_subjects s WHERE s.subject_pseudonym = q.subject_pseudonym
    )
    -- The same refusal seen again is one row that counts it, with the latest payload.
    ON CONFLICT (fingerprint) DO UPDATE SET
        occurrences = quarantine.occurrences + EXCLUDED.occurrences,
        last_seen_at = EXCLUDED.last_seen_at,
        error_message = EXCLUDED.error_message,
        subject_pseudonym = EXCLUDED.subject_pseudonym,
        attributes = EXCLUDED.attributes,
        data = EXCLUDED.data,
        policy_version = EXCLUDED.policy_version,
        contract_version = EXCLUDED.contract_version,
        violations = EXCLUDED.violations,
        event = EXCLUDED.event
)
SELECT source, id, false AS suppressed FROM new_keys
UNION ALL
SELECT source, id, true FROM suppressed
"""


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except SluiceError:  # already mapped, by an inner call
        raise
    except Exception as exc:
        if isinstance(exc, asyncpg.CheckViolationError):
            raise PartitionMissing(f"{operation}: no partition for the batch") from exc
        if is_transient(exc):
            metrics.DATABASE_ERRORS.labels("transient").inc()
            raise TransientStorageError(f"{operation}: {type(exc).__name__}") from exc
        if isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "")[:2] in _REFUSED_CLASSES:
            metrics.DATABASE_ERRORS.labels("refused_value").inc()
            raise StorageRefusedValue(f"{operation}: SQLSTATE {exc.sqlstate}") from exc
        if isinstance(exc, asyncpg.PostgresError):
            metrics.DATABASE_ERRORS.labels("other").inc()
            log.error("database error", extra={"operation": operation, "sqlstate": exc.sqlstate})
            raise StorageUnavailable(f"{operation}: SQLSTATE {exc.sqlstate}") from exc
        raise


def quarantine_rows_json(records: Sequence[QuarantineRecord]) -> str:
    """The batch's quarantine rows, one per fingerprint with its count, in fingerprint
    order: one statement cannot upsert a row twice, and concurrent batches must lock
    shared rows in one order or deadlock."""
    grouped: dict[str, tuple[QuarantineRecord, int]] = {}
    for record in records:
        fingerprint = quarantine_fingerprint(record)
        _, seen = grouped.get(fingerprint, (record, 0))
        grouped[fingerprint] = (record, seen + 1)
    return orjson.dumps(
        [
            {f.name: getattr(record, f.name) for f in fields(record)}
            | {"fingerprint": fingerprint, "occurrences": occurrences}
            for fingerprint, (record, occurrences) in sorted(grouped.items())
        ]
    ).decode()


def quarantine_fingerprint(record: QuarantineRecord) -> str:
    """What makes two refusals the same: the event's identity when it has one (a resent
    event is the same event, whatever else changed), else everything kept of it."""
    if record.source is not None and record.event_id is not None:
        identity: list[str | None] = [record.source, record.event_id]
    else:
        identity = [record.attributes_json, record.data_json]
    material = orjson.dumps([*identity, record.code, record.field])
    return hashlib.sha256(material).hexdigest()


class EventRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write_batch(
        self,
        events: Sequence[AnonymizedEvent],
        quarantine: Sequence[QuarantineRecord],
        *,
        received_at: datetime,
    ) -> BatchResult:
        """Store new events and quarantine rows atomically; say which keys were new and
        which belong to suppressed subjects (neither stored nor claimed).

        `events` must hold each `(source, id)` at most once (`BatchWriter` sees to it):
        a repeat would be stored twice, as `events` has no unique constraint of its own.
        It should be sorted by key: concurrent batches that claim overlapping keys in
        different orders deadlock.
        """
        with mapped_errors("write_batch"):
            rows = await self._pool.fetch(
                WRITE_BATCH,
                list(map(_BATCH_ROW, events)),
                received_at,
                quarantine_rows_json(quarantine),
            )
        result = BatchResult(new=set(), suppressed=set())
        for row in rows:
            (result.suppressed if row["suppressed"] else result.new).add((row["source"], row["id"]))
        return result

    async def ensure_partitions(self, ranges: Sequence[PartitionRange]) -> list[str]:
        """Create the missing partitions among `ranges`; return the names created.

        Serialized across processes by an advisory lock, so replicas starting together
        do not race on the same `CREATE TABLE`.
        """
        created: list[str] = []
        with mapped_errors("ensure_partitions"):
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_DDL_LOCK)
                for partition in ranges:
                    exists = await connection.fetchval(
                        "SELECT to_regclass($1) IS NOT NULL", partition.name
                    )
                    if exists:
                        continue
                    # DDL takes no bind parameters; the name and bounds come from our own
                    # arithmetic, never from input.
                    await connection.execute(
                        f'CREATE TABLE "{partition.name}" PARTITION OF events '
                        f"FOR VALUES FROM ('{partition.start.isoformat()}') "
                        f"TO ('{partition.end.isoformat()}')"
                    )
                    created.append(partition.name)
        return created

    async def trim(self, table: str, *, older_than: datetime, chunk: int = 10_000) -> int:
        """Delete rows of `table` dated before `older_than`, in small transactions so no
        long lock or huge WAL burst hits the ingest path. Not for `events`: its retention
        drops whole partitions."""
        column = _TRIMMABLE[table]
        total = 0
        with mapped_errors(f"trim {table}"):
            while True:
                status = await self._pool.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - fixed names # nosec B608
                    f"SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2))",
                    older_than,
                    chunk,
                )
                deleted = int(status.rsplit(" ", 1)[-1])
                total += deleted
                if deleted < chunk:
                    return total

    async def drop_partitions_ending_before(self, cutoff: datetime) -> list[str]:
        """Detach and drop every partition whose whole range ends at or before `cutoff`:
        retention by `DROP TABLE`, never a row-by-row `DELETE` on the events table."""
        dropped: list[str] = []
        with mapped_errors("drop_partitions"):
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_DDL_LOCK)
                rows = await connection.fetch(
                    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound "
                    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'events'::regclass ORDER BY c.relname"
                )
                for row in rows:
                    bounds = _BOUNDS.search(row["bound"] or "")
                    if bounds is None or datetime.fromisoformat(bounds.group(2)) > cutoff:
                        continue  # the DEFAULT partition, or still within retention
                    name = row["relname"]
                    await connection.execute(f'ALTER TABLE events DETACH PARTITION "{name}"')
                    await connection.execute(f'DROP TABLE "{name}"')
                    dropped.append(name)
        return dropped

    @asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        """Yields whether this process won the cluster-wide maintenance lock; only the
        winner should run upkeep, the others skip this round."""
        with mapped_errors("maintenance_lock"):
            async with self._pool.acquire() as connection:
                won = bool(
                    await connection.fetchval("SELECT pg_try_advisory_lock($1)", _MAINTENANCE_LOCK)
                )
                try:
                    yield won
                finally:
                    if won:
                        await connection.execute("SELECT pg_advisory_unlock($1)", _MAINTENANCE_LOCK)

    async def schema_revision(self, *, probe_timeout_s: float) -> str | None:
        """The applied Alembic revision; doubles as the readiness probe of the database."""
        with mapped_errors("schema_revision"):
            revision: str | None = await self._pool.fetchval(
                "SELECT version_num FROM alembic_version LIMIT 1", timeout=probe_timeout_s
            )
            return revision

    async def accepts_writes(self, *, probe_timeout_s: float) -> bool:
        """Whether a write could commit now: not a standby, not read-only (a failover's
        old primary, or one set read-only because its disk is full)."""
        with mapped_errors("accepts_writes"):
            writable: bool = await self._pool.fetchval(
                "SELECT NOT pg_is_in_recovery()"
                " AND current_setting('transaction_read_only') = 'off'",
                timeout=probe_timeout_s,
            )
            return writable
