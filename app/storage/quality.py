"""The `quality_counts` table: per-minute outcome counts shared by every process."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import NamedTuple

import asyncpg

from app.storage.repository import mapped_errors

_ADD = """
INSERT INTO quality_counts (bucket_start, type, outcome, code, events)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (bucket_start, type, outcome, code)
DO UPDATE SET events = quality_counts.events + EXCLUDED.events
"""
_SUMMARY = """
SELECT type, outcome, code, sum(events)::bigint AS events
FROM quality_counts
WHERE bucket_start >= $1
GROUP BY type, outcome, code
ORDER BY type, outcome, code
"""


class QualityKey(NamedTuple):
    bucket_start: datetime
    type: str
    outcome: str
    code: str  # "" when the outcome has none


class QualityCount(NamedTuple):
    type: str
    outcome: str
    code: str
    events: int


class QualityRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, counts: Counter[QualityKey]) -> None:
        # Sorted: processes flushing at once then lock shared rows in one order.
        keys = sorted(counts)
        with mapped_errors("add quality counts"):
            await self._pool.execute(
                _ADD,
                [k.bucket_start for k in keys],
                [k.type for k in keys],
                [k.outcome for k in keys],
                [k.code for k in keys],
                [counts[k] for k in keys],
            )

    async def summary(self, since: datetime) -> list[QualityCount]:
        with mapped_errors("read quality counts"):
            rows = await self._pool.fetch(_SUMMARY, since)
        return [QualityCount(r["type"], r["outcome"], r["code"], r["events"]) for r in rows]
