"""Turns one batch into one committed transaction, and the result into per-event outcomes.

- Events repeated inside the batch are written once; the repeats are `duplicate`.
- Events are sorted by `(source, id)` so concurrent batches lock keys in one order.
- Transient database errors are retried by the process's one retry policy
  (`app.storage.retry.RetryPolicy`: classification, reconnection after a failover,
  backoff with jitter, the circuit breaker) until the earliest waiter's deadline; then
  `StorageUnavailable` fails the batch's waiters with 503. The statement is atomic: a
  retry never half-writes.
- A value PostgreSQL refuses (a rare case the edge could not foresee) fails only its own
  event: the batch is split in halves until the culprit stands alone; it is then
  answered `rejected` with `storage.refused_value` and quarantined without its values.
- Before writing into a time range with no partition yet, the partitions are created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from app.clock import MonotonicClock, WallClock, monotonic, utc_now
from app.config import DatabaseSettings
from app.errors import ErrorCode, PartitionMissing, StorageRefusedValue
from app.model.events import AnonymizedEvent, QuarantineRecord, Writable
from app.model.outcomes import STORAGE_REFUSED, Outcome
from app.observability import metrics
from app.storage.maintenance import ensure_partitions_ahead
from app.storage.repository import BatchResult, EventRepository
from app.storage.retry import RetryPolicy

log = logging.getLogger(__name__)

# Told about every committed batch and its outcomes (quality counts); must not block.
CommitObserver = Callable[[Sequence[Writable], Sequence[Outcome]], None]


class BatchWriter:
    def __init__(
        self,
        repository: EventRepository,
        db: DatabaseSettings,
        *,
        max_backoff_s: float,
        wall_clock: WallClock = utc_now,
        clock: MonotonicClock = monotonic,
        on_committed: CommitObserver | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._repository = repository
        # None: retries only, no reconnection or breaker (tests and one-off tools).
        self._policy = policy or RetryPolicy(max_backoff_s=max_backoff_s, clock=clock)
        self._on_committed = on_committed
        self._db = db
        self._wall_clock = wall_clock
        self._clock = clock
        self._partitions_ready_until: datetime | None = None

    async def ensure_partitions(self) -> list[str]:
        created, self._partitions_ready_until = await ensure_partitions_ahead(
            self._repository, self._db, self._wall_clock()
        )
        return created

    async def write(self, batch: Sequence[Writable], deadline: float) -> list[Outcome]:
        started = self._clock()
        metrics.BATCH_SIZE.observe(len(batch))
        try:
            outcomes = await self._write_isolating(list(batch), deadline)
        finally:
            metrics.FLUSH_DURATION.observe(self._clock() - started)
        if self._on_committed is not None:
            self._on_committed(batch, outcomes)
        return outcomes

    async def _write_isolating(self, batch: list[Writable], deadline: float) -> list[Outcome]:
        try:
            return await self._write_retrying(batch, deadline)
        except StorageRefusedValue:
            if len(batch) == 1:
                return await self._write_retrying([_refused(batch[0])], deadline)
            middle = len(batch) // 2
            first = await self._write_isolating(batch[:middle], deadline)
            return first + await self._write_isolating(batch[middle:], deadline)

    async def _write_retrying(self, batch: list[Writable], deadline: float) -> list[Outcome]:
        return await self._policy.run(lambda: self._write_once(batch), deadline)

    async def _write_once(self, batch: list[Writable]) -> list[Outcome]:
        received_at = self._wall_clock()
        if self._partitions_ready_until is None or received_at >= self._partitions_ready_until:
            await self.ensure_partitions()
        unique: dict[tuple[str, str], AnonymizedEvent] = {}
        quarantine: list[QuarantineRecord] = []
        for item in batch:
            if isinstance(item, QuarantineRecord):
                quarantine.append(item)
            else:
                unique.setdefault(item.key, item)
        events = [unique[key] for key in sorted(unique)]
        try:
            result = await self._repository.write_batch(events, quarantine, received_at=received_at)
        except PartitionMissing:
            self._partitions_ready_until = None  # the retry creates them first
            raise
        return _outcomes(batch, result)


def _outcomes(batch: Sequence[Writable], result: BatchResult) -> list[Outcome]:
    outcomes: list[Outcome] = []
    claimed: set[tuple[str, str]] = set()
    for item in batch:
        if isinstance(item, QuarantineRecord):
            outcomes.append(Outcome.QUARANTINED if item.held else Outcome.REJECTED)
        elif item.key in result.suppressed:
            outcomes.append(Outcome.SUPPRESSED)
        elif item.key in result.new and item.key not in claimed:
            claimed.add(item.key)  # the first occurrence in the batch is the stored one
            outcomes.append(Outcome.STORED)
        else:
            outcomes.append(Outcome.DUPLICATE)
    return outcomes


def _refused(item: Writable) -> QuarantineRecord:
    """The quarantine row for a writable PostgreSQL refused: only values we generated."""
    log.warning(
        "database refused an event value", extra={"code": str(ErrorCode.STORAGE_REFUSED_VALUE)}
    )
    return QuarantineRecord.of(STORAGE_REFUSED, transport=item.transport)
