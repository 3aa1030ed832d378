"""Writing a chunk exactly once, and remembering that it was written.

Each side of a chunk (its events, its quarantine rows) is written by the service's own
`BatchWriter` (dedup in the batch, sort by key, retries, bisection of a refused value)
over the service's one statement (`EventRepository.write_batch`), in batches of
`--batch_size`. `ClaimingRepository` runs that statement in a transaction that first
inserts the batch's claim into `backfill_commits`: if the claim is there already (a
retried bundle, a job restarted after a kill), the batch is skipped whole. So a batch's
rows and its record commit together or not at all, and nothing of a chunk is counted
twice, not even a quarantine row's `occurrences`. Events would be stored once anyway
(`event_keys`); the claim is what makes the quarantine side exact as well.

Once all of a side is written, a `done` row says so; `SkipCommitted` drops a chunk
whose two sides are done before it is even read. A batch's claim is its position in the
chunk and a digest of its keys, so a batch that PostgreSQL made the writer split (a
refused value) claims each half by its own content.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import apache_beam as beam
import asyncpg
from apache_beam.metrics import Metrics

from app.clock import monotonic, utc_now
from app.model.events import AnonymizedEvent, QuarantineRecord, Writable
from app.pipeline.writer import BatchWriter
from app.storage.repository import (
    BatchResult,
    EventRepository,
    mapped_errors,
    quarantine_fingerprint,
)
from sluice_beam.chunks import Chunk
from sluice_beam.runtime import Resources

DONE = "done"
SIDES = ("events", "quarantine")
_NAMESPACE = "sluice"

_CLAIM = """
INSERT INTO backfill_commits (job, chunk, side, part, writables, committed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
RETURNING true
"""
_DONE_SIDES = """
SELECT count(*) FROM backfill_commits WHERE job = $1 AND chunk = $2 AND part = 'done'
"""


class ClaimingRepository(EventRepository):
    """The service's batch statement, preceded in its transaction by the batch's claim.

    `claim` names the chunk, side and batch the next `write_batch` belongs to; the
    caller sets it before each `BatchWriter.write` (one DoFn instance writes one batch at
    a time). A batch already claimed returns "nothing new": its events are duplicates."""

    def __init__(self, pool: asyncpg.Pool, job: str) -> None:
        super().__init__(pool)
        self._claiming_pool = pool
        self._job = job
        self.claim: tuple[str, str, int] = ("", "", 0)

    async def write_batch(
        self,
        events: Sequence[AnonymizedEvent],
        quarantine: Sequence[QuarantineRecord],
        *,
        received_at: datetime,
    ) -> BatchResult:
        chunk, side, index = self.claim
        part = f"{index}:{_digest(events, quarantine)}"
        with mapped_errors("claim backfill batch"):
            async with self._claiming_pool.acquire() as connection, connection.transaction():
                claimed = await connection.fetchval(
                    _CLAIM, self._job, chunk, side, part, len(events) + len(quarantine), received_at
                )
                if claimed is None:
                    return BatchResult(new=set(), suppressed=set())
                # The same statement on this transaction's connection (it needs only `fetch`).
                inner = EventRepository(connection)
                return await inner.write_batch(events, quarantine, received_at=received_at)


def _digest(events: Sequence[AnonymizedEvent], quarantine: Sequence[QuarantineRecord]) -> str:
    material = hashlib.sha256()
    for source, event_id in sorted(event.key for event in events):
        material.update(f"e\x00{source}\x00{event_id}\x00".encode())
    for fingerprint in sorted(quarantine_fingerprint(record) for record in quarantine):
        material.update(f"q\x00{fingerprint}\x00".encode())
    return material.hexdigest()[:32]


class SkipCommitted(beam.DoFn):
    """Drops the chunks this job has already written whole."""

    def __init__(self, job: str, environment: Mapping[str, str]) -> None:
        self._job = job
        self._environment = dict(environment)
        self._skipped = Metrics.counter(_NAMESPACE, "chunks_skipped")

    def setup(self) -> None:
        self._resources = Resources(self._environment)

    def process(self, chunk: Chunk) -> Iterator[Chunk]:
        done = self._resources.run(self._resources.pool.fetchval(_DONE_SIDES, self._job, chunk.key))
        if done == len(SIDES):
            self._skipped.inc()
            return
        yield chunk

    def teardown(self) -> None:
        self._resources.close()


class WriteChunk(beam.DoFn):
    """`(chunk, writables)` of one side → written in claimed batches, then marked done.

    Yields nothing; counts outcomes in Beam metrics (`events_stored`, `events_duplicate`,
    `quarantine_rejected`, ...) and refusals per error code (`code:<code>`)."""

    def __init__(
        self,
        job: str,
        side: str,
        *,
        batch_size: int,
        write_timeout_s: float,
        environment: Mapping[str, str],
    ) -> None:
        self._job = job
        self._side = side
        self._batch_size = batch_size
        self._write_timeout_s = write_timeout_s
        self._environment = dict(environment)

    def setup(self) -> None:
        self._resources = Resources(self._environment)
        settings = self._resources.settings
        self._repository = ClaimingRepository(self._resources.pool, self._job)
        self._writer = BatchWriter(
            self._repository, settings.db, max_backoff_s=settings.batch.retry_max_backoff_s
        )

    def process(self, element: tuple[Chunk, list[Writable]]) -> Iterator[None]:
        chunk, writables = element
        if self._done(chunk):
            return
        outcomes: Counter[str] = Counter()
        for index, start in enumerate(range(0, len(writables), self._batch_size)):
            batch = writables[start : start + self._batch_size]
            self._repository.claim = (chunk.key, self._side, index)
            deadline = monotonic() + self._write_timeout_s
            outcomes.update(
                str(o) for o in self._resources.run(self._writer.write(batch, deadline))
            )
        self._mark_done(chunk, len(writables))
        for outcome, count in outcomes.items():
            Metrics.counter(_NAMESPACE, f"{self._side}_{outcome}").inc(count)
        codes = Counter(str(w.code) for w in writables if isinstance(w, QuarantineRecord))
        for code, count in codes.items():
            Metrics.counter(_NAMESPACE, f"code:{code}").inc(count)
        yield from ()

    def _done(self, chunk: Chunk) -> bool:
        found = self._resources.run(
            self._resources.pool.fetchval(
                "SELECT true FROM backfill_commits "
                "WHERE job = $1 AND chunk = $2 AND side = $3 AND part = 'done'",
                self._job,
                chunk.key,
                self._side,
            )
        )
        return bool(found)

    def _mark_done(self, chunk: Chunk, writables: int) -> None:
        self._resources.run(
            self._resources.pool.execute(
                _CLAIM, self._job, chunk.key, self._side, DONE, writables, utc_now()
            )
        )

    def teardown(self) -> None:
        self._resources.close()
