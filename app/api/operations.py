"""Probes and metrics: `/health/live`, `/health/ready`, `/health`, `/metrics`.

- live: the process can make progress (its batching loop runs); failing it asks for a
  restart, so it never depends on the database;
- ready: it can take events now: database reachable (its circuit breaker not open),
  schema at the migration head,
  batching loop alive, not draining, and RabbitMQ connected where the process uses it
  (the consumer process; the web process in broker-backed HTTP mode); failing it takes
  the pod out of the load balancer;
- `/health`: both, with each component's detail, for humans and dashboards.

Probes are always open; `/metrics` needs a key with the `metrics` scope when
`SLUICE_AUTH_METRICS=key`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from app.api.dependencies import Services, ServicesDep
from app.api.security import metrics_key
from app.broker import BrokerStatus
from app.errors import SluiceError
from app.observability import metrics

router = APIRouter(tags=["operations"])

_PROBE_TIMEOUT_S = 2.0


async def _database(services: Services) -> dict[str, Any]:
    async def probe() -> tuple[str | None, bool]:
        repository = services.repository
        revision = await repository.schema_revision(probe_timeout_s=_PROBE_TIMEOUT_S)
        return revision, await repository.accepts_writes(probe_timeout_s=_PROBE_TIMEOUT_S)

    try:
        # Through the breaker: while it is open the database is not asked; once it may
        # probe, this probe is the trial, so an idle, unready pod can still recover.
        checked = services.breaker.probe(probe) if services.breaker else probe()
        revision, writable = await asyncio.wait_for(checked, _PROBE_TIMEOUT_S + 0.5)
    except (SluiceError, TimeoutError) as exc:
        return {"ok": False, "error": type(exc).__name__}
    at_head = revision == services.schema_head
    return {
        "ok": at_head and writable,
        "revision": revision,
        "expected_revision": services.schema_head,
        "writable": writable,  # false: a standby, or a primary refusing writes (disk full)
    }


def _batcher(services: Services) -> dict[str, Any]:
    batcher = services.batcher
    return {"ok": batcher.accepting, "alive": batcher.alive, "buffered_events": batcher.held_events}


def _broker(broker: BrokerStatus) -> dict[str, Any]:
    return {"ok": broker.connected}


def _json(body: dict[str, Any], ok: bool) -> Response:
    return Response(
        orjson.dumps(body), status_code=200 if ok else 503, media_type="application/json"
    )


@router.get("/health/live", summary="Liveness: the batching loop runs")
async def live(services: ServicesDep) -> Response:
    batcher = _batcher(services)
    return _json(
        {"status": "ok" if batcher["ok"] else "failing", "batcher": batcher}, batcher["ok"]
    )


@router.get("/health/ready", summary="Readiness: events can be taken and committed now")
async def ready(services: ServicesDep) -> Response:
    return await health(services)


@router.get("/health", summary="Liveness and readiness with component detail")
async def health(services: ServicesDep) -> Response:
    components = {"database": await _database(services), "batcher": _batcher(services)}
    if services.breaker is not None:
        components["circuit"] = services.breaker.status()
    if services.drain is not None:
        components["drain"] = services.drain.status()
    if services.broker is not None:
        components["broker"] = _broker(services.broker)
    ok = all(component["ok"] for component in components.values())
    metrics.READY.set(1 if ok else 0)
    return _json({"status": "ok" if ok else "failing", "components": components}, ok)


@router.get(
    "/metrics",
    summary="Prometheus metrics (classic text exposition format)",
    responses={200: {"content": {"text/plain": {}}}, 401: {}, 403: {}, 429: {}},
    dependencies=[Depends(metrics_key)],
)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
