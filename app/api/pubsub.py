"""The Pub/Sub push endpoint: one delivery in, 204 out only after the commit.

- 204 (an ack on real Pub/Sub and on the emulator, which does not take 202) once the
  message is committed: stored, a duplicate of a redelivery, suppressed, or quarantined
  because it can never be valid (otherwise Pub/Sub would redeliver it forever);
- 429 / 503 with `Retry-After` when it cannot be taken now, so Pub/Sub backs off and
  redelivers; the buffer is the same bounded one HTTP ingest uses;
- 400 for a body that is not a push delivery at all.

Requests are authenticated first (`sources/oidc.py`) when an OIDC audience is set, which
production settings require while the endpoint is enabled (`SLUICE_PUBSUB_ENABLED`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import read_limited_body
from app.api.dependencies import ServicesDep
from app.api.problems import PROBLEM_JSON
from app.config import Settings
from app.model.events import Transport
from app.pipeline.message import AckMode
from app.sources.http import HttpRequest
from app.sources.pubsub import PubSubDecoder

_PROBLEM = {"description": "problem", "content": {PROBLEM_JSON: {}}}


def pubsub_router(settings: Settings) -> APIRouter | None:
    if not settings.pubsub.enabled:
        return None
    router = APIRouter(tags=["pubsub"])
    decoder = PubSubDecoder(settings.pubsub)

    @router.post(
        settings.pubsub.push_path,
        status_code=204,
        summary="Pub/Sub push delivery (wrapped or no_wrapper); 204 = ack after commit",
        responses={
            400: _PROBLEM,
            401: _PROBLEM,
            403: _PROBLEM,
            413: _PROBLEM,
            429: _PROBLEM,
            503: _PROBLEM,
        },
    )
    async def push(request: Request, services: ServicesDep) -> Response:
        await services.push_authenticator.verify(request.headers.get("authorization"))
        limits = services.settings.limits
        body = await read_limited_body(
            request, limits.max_body_bytes, timeout_s=limits.body_timeout_s
        )
        candidates = decoder.decode(HttpRequest(request.headers, body))
        await services.pipeline.ingest(
            candidates, transport=Transport.PUBSUB, ack=AckMode.COMMITTED
        )
        return Response(status_code=204)

    return router
