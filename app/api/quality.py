"""`GET /admin/quality`: the last hour or day per event type, from every replica's counts.

Per type (types without a contract share `_other`): events stored, duplicates, quarantined
and rejected by code, suppressed, and the duplicate rate (duplicates over all events that
passed validation): the data behind a data-quality dashboard.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from app.api.admin import admin_router
from app.api.dependencies import ServicesDep
from app.clock import utc_now
from app.model.outcomes import Outcome
from app.storage.quality import QualityCount

router = admin_router("admin: quality")


class Period(StrEnum):
    HOUR = "hour"
    DAY = "day"


_SPAN = {Period.HOUR: timedelta(hours=1), Period.DAY: timedelta(days=1)}


class TypeQuality(BaseModel):
    type: str
    stored: int = 0
    duplicate: int = 0
    suppressed: int = 0
    rejected: dict[str, int] = {}
    quarantined: dict[str, int] = {}
    duplicate_rate: float = 0.0


class QualityReport(BaseModel):
    period: Period
    since: str
    types: list[TypeQuality]


@router.get("/quality", summary="Accepted, rejected by code and duplicate rate, per type")
async def quality(
    services: ServicesDep, period: Annotated[Period, Query()] = Period.HOUR
) -> QualityReport:
    since = utc_now() - _SPAN[period]
    counts = await services.quality.summary(since)
    return QualityReport(period=period, since=since.isoformat(), types=_per_type(counts))


def _per_type(counts: list[QualityCount]) -> list[TypeQuality]:
    types: dict[str, TypeQuality] = {}
    for count in counts:
        summary = types.setdefault(count.type, TypeQuality(type=count.type))
        if count.outcome == Outcome.REJECTED:
            summary.rejected[count.code] = summary.rejected.get(count.code, 0) + count.events
        elif count.outcome == Outcome.QUARANTINED:
            summary.quarantined[count.code] = summary.quarantined.get(count.code, 0) + count.events
        elif count.outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.SUPPRESSED):
            setattr(summary, count.outcome, getattr(summary, count.outcome) + count.events)
    for summary in types.values():
        passed = summary.stored + summary.duplicate + summary.suppressed
        summary.duplicate_rate = round(summary.duplicate / passed, 4) if passed else 0.0
    return list(types.values())
