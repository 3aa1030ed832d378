"""Table upkeep: partitions created ahead of need, idempotency keys trimmed past the window.

Run by `python -m app maintain` (a CronJob) and by every replica's periodic task; the
repository serializes the DDL across processes with an advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.clock import WallClock
from app.config import DatabaseSettings
from app.errors import SluiceError
from app.observability import metrics
from app.storage.partitions import partitions_ahead
from app.storage.repository import EventRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    partitions_created: list[str]
    partitions_ready_until: datetime
    event_keys_trimmed: int


async def ensure_partitions_ahead(
    repository: EventRepository, db: DatabaseSettings, now: datetime
) -> tuple[list[str], datetime]:
    """Create the partition for `now` and `db.partitions_ahead` more; return what was
    created and the moment until which inserts are covered."""
    ranges = partitions_ahead(now, db.partition_width, db.partitions_ahead)
    created = await repository.ensure_partitions(ranges)
    metrics.PARTITIONS_CREATED.inc(len(created))
    if created:
        log.info("partitions created", extra={"partitions": created})
    return created, ranges[-1].end


async def maintain(
    repository: EventRepository, db: DatabaseSettings, now: datetime
) -> MaintenanceReport:
    created, ready_until = await ensure_partitions_ahead(repository, db, now)
    trimmed = await repository.trim_event_keys(
        older_than=now - timedelta(days=db.dedup_window_days)
    )
    return MaintenanceReport(created, ready_until, trimmed)


async def run_periodically(
    repository: EventRepository, db: DatabaseSettings, clock: WallClock
) -> None:
    """The in-service loop: upkeep every `maintenance_interval_s`; failures are logged and
    retried at the next tick (a database outage must not kill the service)."""
    while True:
        await asyncio.sleep(db.maintenance_interval_s)
        try:
            await maintain(repository, db, clock())
        except SluiceError as exc:
            log.warning("maintenance failed; retrying next interval", extra={"error": exc.message})
        except Exception:  # a bug here must not stop upkeep for good, nor the service
            log.exception("maintenance failed unexpectedly; retrying next interval")
