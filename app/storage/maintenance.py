"""Table upkeep: partitions created ahead of need, idempotency keys trimmed past the window.

Run by `python -m app maintain` (a CronJob) and by every replica's periodic task; the
repository serializes the DDL across processes with an advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.clock import WallClock
from app.config import DatabaseSettings, RetentionSettings
from app.errors import SluiceError
from app.observability import metrics
from app.storage.partitions import partitions_ahead
from app.storage.repository import EventRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    ran: bool  # False: another process held the maintenance lock, so this one skipped
    partitions_created: list[str] = field(default_factory=list)
    partitions_ready_until: datetime | None = None
    partitions_dropped: list[str] = field(default_factory=list)
    rows_trimmed: dict[str, int] = field(default_factory=dict)


async def ensure_partitions_ahead(
    repository: EventRepository, db: DatabaseSettings, now: datetime
) -> tuple[list[str], datetime]:
    """Create the partition for `now` and `db.partitions_ahead` more; return what was
    created and the moment until which inserts are covered."""
    ranges = partitions_ahead(now, db.partition_width, db.partitions_ahead)
    created = await repository.ensure_partitions(ranges)
    metrics.PARTITIONS_CREATED.inc(len(created))
    metrics.MAINTENANCE_LAST_SUCCESS.set_to_current_time()
    if created:
        log.info("partitions created", extra={"partitions": created})
    return created, ranges[-1].end


async def maintain(
    repository: EventRepository,
    db: DatabaseSettings,
    retention: RetentionSettings,
    now: datetime,
) -> MaintenanceReport:
    """One round of upkeep, run by whichever process wins the cluster-wide lock."""
    async with repository.maintenance_lock() as won:
        if not won:
            return MaintenanceReport(ran=False)
        created, ready_until = await ensure_partitions_ahead(repository, db, now)
        dropped = await repository.drop_partitions_ending_before(
            now - timedelta(days=retention.events_days)
        )
        metrics.RETENTION_DROPPED.labels("events_partitions").inc(len(dropped))
        if dropped:
            log.info("expired partitions dropped", extra={"partitions": dropped})
        trimmed = {
            table: await repository.trim(table, older_than=now - timedelta(days=days))
            for table, days in (
                ("event_keys", db.dedup_window_days),
                ("quarantine", retention.quarantine_days),
                ("subject_audit", retention.audit_days),
                ("quality_counts", retention.quality_days),
            )
        }
        for table, count in trimmed.items():
            metrics.RETENTION_DROPPED.labels(table).inc(count)
        return MaintenanceReport(True, created, ready_until, dropped, trimmed)


async def run_periodically(
    repository: EventRepository,
    db: DatabaseSettings,
    retention: RetentionSettings,
    clock: WallClock,
) -> None:
    """The in-service loop: upkeep every `maintenance_interval_s`; failures are logged and
    retried at the next tick (a database outage must not kill the service)."""
    while True:
        await asyncio.sleep(db.maintenance_interval_s)
        try:
            await maintain(repository, db, retention, clock())
        except SluiceError as exc:
            metrics.MAINTENANCE_FAILURES.inc()
            log.warning("maintenance failed; retrying next interval", extra={"error": exc.message})
        except Exception:  # a bug here must not stop upkeep for good, nor the service
            metrics.MAINTENANCE_FAILURES.inc()
            log.exception("maintenance failed unexpectedly; retrying next interval")
