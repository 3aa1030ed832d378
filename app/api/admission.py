"""The overload gate: the first thing a request meets, before routing and every middleware.

At five times the load a process can commit, most requests must be refused, and a
refusal must cost far less than taking a request: otherwise the refusals themselves fill
the event loop, every answer (the 2xx after commit as much as the 429s) waits behind
them, and producers see timeouts instead of `Retry-After`. So a `POST` to a route that
feeds the buffer (`/ingest`, the Pub/Sub push route when it is on) is refused here while
the buffer is `full`, without reading its body, authenticating it or routing it: a 429
`transient.buffer_full` problem document built once at start-up, the same body, status
and `Retry-After` the endpoint's own `BufferFull` answer has.

A refusal is counted where every other one is (`sluice_buffer_refusals_total`, the HTTP
request counters) and logged as the access log's per-second summary (`RefusalLog`). It
refuses before authentication on purpose: a 429 tells a caller without a key nothing but
that this worker is full, and checking the key (or verifying a push token's signature)
first would spend CPU on requests that are refused anyway. Requests that pass the gate
are still refused whole by `Batcher.submit` when their events do not fit.

In broker-backed HTTP mode (`SLUICE_HTTP_ACK=broker`) neither route feeds the buffer,
so the gate lets everything through.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.dependencies import Services
from app.api.problems import problem, problem_for
from app.config import HttpAck, Settings
from app.errors import BufferFull, ErrorCode
from app.model.events import Transport
from app.observability import metrics
from app.observability.access_log import RefusalLog
from app.pipeline.batcher import Batcher


def buffered_routes(settings: Settings) -> dict[str, Transport]:
    """The paths whose `POST` puts events into this process's buffer, and their source."""
    if settings.http_ack is HttpAck.BROKER:
        return {}
    routes = {"/ingest": Transport.HTTP}
    if settings.pubsub.enabled:
        routes[settings.pubsub.push_path] = Transport.PUBSUB
    return routes


def install_buffer_gate(app: FastAPI, settings: Settings, refusals: RefusalLog) -> None:
    """Put the gate outside the app's whole middleware stack (tracing's too): Starlette
    builds that stack on the first request, so the builder is wrapped, not the stack."""
    routes = buffered_routes(settings)
    if not routes:
        return
    inner = app.build_middleware_stack
    retry_after_s = settings.batch.retry_after_s

    def build() -> ASGIApp:
        return BufferGate(
            inner(),
            state=app.state,
            routes=routes,
            max_admitted=settings.limits.max_requests_in_flight,
            retry_after_s=retry_after_s,
            refusals=refusals,
        )

    app.build_middleware_stack = build  # type: ignore[method-assign]  # Starlette's one hook


class _Answer:
    """A problem answer sent as two prebuilt ASGI messages."""

    __slots__ = ("body", "start", "status")

    def __init__(self, response: Response) -> None:
        self.status = response.status_code
        self.start: Message = {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
        self.body: Message = {"type": "http.response.body", "body": bytes(response.body)}


class BufferGate:
    """Refuses `POST`s to `routes` with a prebuilt answer while the lifespan's batcher
    (found in `state.services`) is full (429 `transient.buffer_full`), or while
    `max_admitted` of them are admitted (503 `transient.overloaded`); passes everything
    else to `app` untouched.

    Admitted means: its body is in (the app received the last of it) and it is not yet
    answered, i.e. its events are being decoded, waiting in the buffer or being written.
    A request still sending its body holds no place, so slow senders cannot lock
    producers out (the body timeout bounds them, `api/body.py`). The bound is soft by the
    requests whose bodies complete at once; the buffer's capacity stays the hard one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: State,
        routes: Mapping[str, Transport],
        max_admitted: int,
        retry_after_s: int,
        refusals: RefusalLog,
    ) -> None:
        self._app = app
        self._state = state
        self._routes = dict(routes)
        self._max_admitted = max_admitted
        self._admitted = 0
        self._refusals = refusals
        self._full = _Answer(problem_for(BufferFull(retry_after_s=retry_after_s)))
        self._overloaded = _Answer(
            problem(
                ErrorCode.OVERLOADED,
                f"more than {max_admitted} requests are being taken by this process",
                retry_after_s=retry_after_s,
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            transport = self._routes.get(scope["path"])
            if transport is not None:
                batcher = self._batcher()
                if batcher is not None:
                    await self._admit(scope, receive, send, transport, batcher)
                    return
        await self._app(scope, receive, send)

    def _batcher(self) -> Batcher | None:
        services: Services | None = getattr(self._state, "services", None)  # set by the lifespan
        return None if services is None else services.batcher

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send, transport: Transport, batcher: Batcher
    ) -> None:
        if batcher.full:
            batcher.count_refusal(transport)
            await self._refuse(scope["path"], self._full, send)
            return
        if self._admitted >= self._max_admitted:
            metrics.overload_refusals(transport).inc()
            await self._refuse(scope["path"], self._overloaded, send)
            return
        counted = False

        async def receive_counting() -> Message:
            nonlocal counted
            message = await receive()
            if not counted and not message.get("more_body", False):
                counted = True  # the body is in: from now on it holds a place
                self._admitted += 1
            return message

        try:
            await self._app(scope, receive_counting, send)
        finally:
            if counted:
                self._admitted -= 1

    async def _refuse(self, route: str, answer: _Answer, send: Send) -> None:
        started = time.perf_counter()
        await send(answer.start)
        await send(answer.body)
        self._refusals.record("POST", route, answer.status, time.perf_counter() - started)
