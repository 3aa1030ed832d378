"""The HTTP access log: one JSON line per request, naming the route template, not the path.

Paths can carry personal data (`/admin/subjects/{subject}/events`), so uvicorn's own
access log is off and this one records `route` (the template), method, status and time.

Requests the overload gate refuses (`api/admission.py`, thousands per second when it
matters) are counted in the same metrics one by one, but logged as one `requests refused`
line per route and status per second, with their `count` (`RefusalLog`): a line per
refusal would cost more than the refusal itself (docs/observability.md, *Access log*).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter

import prometheus_client
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
    _count(method, route, status, elapsed)
    log.info(
        "request",
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        },
    )


class RefusalLog:
    """The access log's account of refused requests: each one counted in the HTTP metrics
    as it happens, the log line summarised.

    The first refusal after a quiet spell arms a timer; when it fires (`interval_s`
    later), one `requests refused` line per (method, route, status) gives how many were
    refused since. `flush()` writes what is pending at once (the lifespan calls it at
    shutdown, so the last second's refusals are not lost with the event loop)."""

    def __init__(self, *, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def record(self, method: str, route: str, status: int, elapsed: float) -> None:
        _count(method, route, status, elapsed)
        self._counts[method, route, status] += 1
        if self._timer is None:
            self._since = time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        window_s = round(time.monotonic() - self._since, 3)
        for (method, route, status), count in self._counts.items():
            log.info(
                "requests refused",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "count": count,
                    "window_s": window_s,
                },
            )
        self._counts.clear()


def _count(method: str, route: str, status: int, elapsed: float) -> None:
    """One request in the HTTP metrics, logged or summarised alike."""
    requests, duration = _children(method, route, status)
    requests.inc()
    duration.observe(elapsed)


@functools.cache
def _children(
    method: str, route: str, status: int
) -> tuple[prometheus_client.Counter, prometheus_client.Histogram]:
    """The metric children of one kind of request, looked up once: its labels are a route
    template (or `<unmatched>`), one of `_METHODS` (or `other`) and a status, so there are
    a few dozen, never one per path or client."""
    return (
        metrics.HTTP_REQUESTS.labels(route=route, method=method, status=status),
        metrics.HTTP_DURATION.labels(route=route),
    )
