"""Admin endpoints for the quarantine: what was refused and why, and replay.

`GET /admin/quarantine` lists rows newest first (filters: code, type, source, time of last
sighting), a page at a time. `POST /admin/quarantine:replay` re-checks matching rows
against the contracts this process loaded and stores those that now pass, through the
same write as live traffic (`app.pipeline.replay`); `dry_run` only counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from app.api.admin import StorableText, admin_router
from app.api.dependencies import ServicesDep
from app.storage.quarantine import QuarantineFilter

router = admin_router("admin: quarantine")


class QuarantinePage(BaseModel):
    rows: list[dict[str, Any]]
    next_cursor: int | None = Field(description="pass as `cursor` for the next, older page")


class ReplayRequest(BaseModel):
    code: StorableText | None = None
    type: StorableText | None = None
    source: StorableText | None = None
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    max_rows: int = Field(10_000, ge=1, le=1_000_000)


class ReplayResponse(BaseModel):
    examined: int
    passed: int
    stored: int
    duplicates: int
    suppressed: int
    still_failing: int
    not_replayable: int
    dry_run: bool


class QuarantineQuery(BaseModel):
    code: StorableText | None = None
    type: StorableText | None = None
    source: StorableText | None = None
    since: datetime | None = Field(None, description="last seen at or after")
    until: datetime | None = Field(None, description="last seen before")
    include_replayed: bool = False
    cursor: int | None = Field(None, ge=1)
    limit: int = Field(100, ge=1, le=500)


@router.get("/quarantine", summary="List quarantined events, newest first")
async def list_quarantine(
    services: ServicesDep, query: Annotated[QuarantineQuery, Query()]
) -> QuarantinePage:
    where = QuarantineFilter(
        query.code, query.type, query.source, query.since, query.until, query.include_replayed
    )
    rows = await services.quarantine.listing(where, before_id=query.cursor, limit=query.limit)
    next_cursor = rows[-1]["quarantine_id"] if len(rows) == query.limit else None
    return QuarantinePage(rows=rows, next_cursor=next_cursor)


@router.post("/quarantine:replay", summary="Store quarantined events that now pass")
async def replay(body: ReplayRequest, services: ServicesDep) -> ReplayResponse:
    where = QuarantineFilter(body.code, body.type, body.source, body.since, body.until)
    report = await services.replayer.replay(where, dry_run=body.dry_run, max_rows=body.max_rows)
    return ReplayResponse.model_validate(report, from_attributes=True)
