"""The HTTP access log: one JSON line per request, naming the route template, not the path.

Paths can carry personal data (`/admin/subjects/{subject}/events`), so uvicorn's own
access log is off and this one records `route` (the template), method, status and time.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import metrics

log = logging.getLogger("sluice.access")

# A client may send any method name; labels and log fields keep to the known ones.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class AccessLogMiddleware:
    """Counts, times and logs each HTTP request once.

    The line is written as the last body message goes out, not after: the request's span is
    still current then, so the line carries its `trace_id`/`span_id` and, under ddtrace,
    `dd.trace_id`/`dd.span_id` (ddtrace closes its span, and logs "0", once that message
    is sent). A request that fails or is cut off before its last message is logged as
    the app returns."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before starting a response
        logged = False

        async def send_recording_status(message: Message) -> None:
            nonlocal status, logged
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                logged = True
                _record(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            if not logged:
                _record(scope, status, time.perf_counter() - started)


def _record(scope: Scope, status: int, elapsed: float) -> None:
    route = getattr(scope.get("route"), "path", None) or "<unmatched>"
    method = scope["method"] if scope["method"] in _METHODS else "other"
    metrics.HTTP_REQUESTS.labels(route=route, method=method, status=status).inc()
    metrics.HTTP_DURATION.labels(route=route).observe(elapsed)
    log.info(
        "request",
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        },
    )
