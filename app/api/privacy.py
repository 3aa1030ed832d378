"""`GET /admin/privacy/scan`: the residual-PII scan of stored events and quarantine rows.

Samples the newest `sample` events and quarantine rows since `since` (default: the last
24 hours), runs the free-text detectors over every stored string and answers, per table,
type and field path, how many strings were flagged, by tag, with one masked example:
never a value. Each call sets `sluice_residual_pii_findings`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Query

from app.api.admin import admin_router
from app.api.dependencies import ServicesDep
from app.clock import utc_now
from app.errors import ErrorCode, RequestRejected
from app.privacy.residual import scan

router = admin_router("admin: privacy")

_DEFAULT_SPAN = timedelta(hours=24)


@router.get("/privacy/scan", summary="Personal data still found in stored rows (masked)")
async def residual_scan(
    services: ServicesDep,
    since: Annotated[datetime | None, Query(description="default: 24 hours ago")] = None,
    sample: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> dict[str, Any]:
    if services.residual is None:
        raise RequestRejected(
            "the scan is not available in this process", code=ErrorCode.INVALID_PARAMETER
        )
    start = since if since is not None else utc_now() - _DEFAULT_SPAN
    rows = await services.residual.sample(start, sample)
    report = await asyncio.to_thread(scan, rows)  # CPU-bound: off the event loop
    return {"since": start.isoformat(), "sample": sample, **report.as_dict()}
