"""The HTTP access log: one JSON line per request, naming the route template, not the path.

Paths can carry personal data (`/admin/subjects/{subject}/events`), so uvicorn's own
access log is off and this one records `route` (the template), method, status and time.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("sluice.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before starting a response

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route or "<unmatched>",
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
