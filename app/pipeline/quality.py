"""Quality signals: every committed batch's outcomes, counted per minute, type and code.

The writer reports each committed batch here; the counts build up in memory and every
`SLUICE_QUALITY_FLUSH_INTERVAL_S` one upsert adds them to `quality_counts`, which every
process and replica shares: the data behind `GET /admin/quality`. Counting in memory and
flushing on a timer keeps the hot write statement free of hot counter rows (concurrent
batches would queue on their row locks). A crash loses at most one interval of counts,
never an event. The same tallies feed the Prometheus counters by type.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from app.clock import MonotonicClock, WallClock, monotonic, utc_now
from app.errors import ErrorCode, SluiceError
from app.model.events import AnonymizedEvent, Writable
from app.model.outcomes import Outcome
from app.observability import metrics
from app.storage.quality import QualityKey, QualityRepository
from app.storage.quarantine import QuarantineRepository
from app.storage.retry import RetryPolicy

log = logging.getLogger(__name__)

# Counts kept while the database is unreachable; beyond this the oldest are dropped
# (they are statistics: losing some beats growing without bound).
_MAX_PENDING_KEYS = 50_000
# How long one flush may retry a transient failure before keeping the counts for the next.
_FLUSH_BUDGET_S = 5.0


class QualityRecorder:
    def __init__(
        self,
        repository: QualityRepository,
        wall_clock: WallClock = utc_now,
        *,
        policy: RetryPolicy | None = None,
        clock: MonotonicClock = monotonic,
    ) -> None:
        self._repository = repository
        self._wall_clock = wall_clock
        self._policy = policy or RetryPolicy(max_backoff_s=1.0, clock=clock)
        self._clock = clock
        self._pending: Counter[QualityKey] = Counter()

    def record(self, batch: Sequence[Writable], outcomes: Sequence[Outcome]) -> None:
        minute = _minute(self._wall_clock())
        # Tallied first, so the keys and the Prometheus increments are made per distinct
        # (type, outcome, code) of the batch, not per event.
        tally = Counter(map(_facts, batch, outcomes))
        for (label, outcome, code), count in tally.items():
            self._pending[QualityKey(minute, label, outcome.value, code)] += count
        metrics.count_by_type(
            ((label, outcome), count) for (label, outcome, _), count in tally.items()
        )

    async def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            await self._policy.run(
                lambda: self._repository.add(pending), self._clock() + _FLUSH_BUDGET_S
            )
        except SluiceError:
            log.warning("quality counts not written; kept for the next flush")
            pending.update(self._pending)
            self._pending = Counter(dict(pending.most_common(_MAX_PENDING_KEYS)))

    async def run(self, interval_s: float, quarantine: QuarantineRepository) -> None:
        """Flush and refresh the quarantine gauge every `interval_s`, until cancelled; the
        final flush happens on cancellation, so a clean shutdown loses nothing."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                await self.flush()
                await _refresh_quarantine_gauge(quarantine)
        finally:
            await self.flush()


async def _refresh_quarantine_gauge(quarantine: QuarantineRepository) -> None:
    try:
        metrics.QUARANTINE_ROWS.set(await quarantine.waiting())
    except SluiceError:
        log.warning("quarantine size not refreshed")


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _facts(item: Writable, outcome: Outcome) -> tuple[str, Outcome, str]:
    label = metrics.type_label(item.type, known=item.contract_version is not None)
    if isinstance(item, AnonymizedEvent):
        # An event the writer turned away is one PostgreSQL refused (see the writer).
        code = ErrorCode.STORAGE_REFUSED_VALUE.value if outcome is Outcome.REJECTED else ""
    else:
        code = item.code.value
    return label, outcome, code
